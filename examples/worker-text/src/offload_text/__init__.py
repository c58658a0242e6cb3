"""An example Offload worker package: ``text.wordcount``."""
