"""Differential privacy (`privacy=<mode>`): Flower's DP wrappers and client mods, with RDP accounting."""

from strategies.privacy.config import PrivacyConfig, check_privacy, parse_privacy

__all__ = ["PrivacyConfig", "check_privacy", "parse_privacy"]
