"""Inference serving: the provider's OpenAI-compatible server, the gateway's routing, the model archive."""
