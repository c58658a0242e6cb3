"""Offload media worker."""
