"""Tests of the model zoo and the accelerator helpers."""
