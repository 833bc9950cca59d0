"""Serverless container services: an image with ports, env and limits, run as replicas on providers and
reached through the platform's gateway."""
