"""ServerApp side: config -> model, strategy and evaluation; metrics, plots, checkpoints."""
