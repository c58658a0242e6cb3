"""Offload media worker: Pillow image pipelines."""
