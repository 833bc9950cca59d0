"""Cxmpute: the thin shell holding settings, logging and the root CLI."""

__version__ = "0.1.0"
