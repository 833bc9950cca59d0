"""Agxnt memory: per-owner named memories on Chroma, and ordered conversation threads."""
