"""Offload reports worker."""
