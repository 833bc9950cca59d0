"""Providers: signed registration with a detected hardware profile, signed heartbeats, reputation and stakes."""
