"""ClientApp side: message dispatch to strategy client halves, and the shared local training loop."""
