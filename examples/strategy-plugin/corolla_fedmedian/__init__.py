"""Example corolla strategy plugin: FedMedian (Yin et al., 2018), copied as a template."""
