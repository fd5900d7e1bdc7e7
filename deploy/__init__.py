"""Deployment across sites: certificates, SuperLink/SuperNode launchers, container and cluster files."""
