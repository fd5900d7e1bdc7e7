"""Template of a custom corolla model (copy, rename, change the network)."""
