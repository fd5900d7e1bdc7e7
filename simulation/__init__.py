"""`corolla run`: Hydra entry point -> Flower's simulation engine (Ray backend)."""
