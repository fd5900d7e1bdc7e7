"""Template of a corolla dataset loader plugin (copy, rename, replace `load`)."""
