"""Offload email worker."""
