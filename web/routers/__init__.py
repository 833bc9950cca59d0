"""One module per API area; each exposes ``router``."""
