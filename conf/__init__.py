"""corolla's settings: the Hydra config tree (YAML beside this file) and the code that reads it."""
