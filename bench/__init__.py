"""Side-by-side benchmarks: `corolla bench <name> [--quick] [--out DIR]` writes DIR/<name>.json."""
