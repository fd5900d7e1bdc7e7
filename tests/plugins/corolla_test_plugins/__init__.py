"""Strategies that misbehave on purpose, path-loaded by the failure tests as a plugin package."""
