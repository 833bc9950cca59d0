"""The chain layer: the CxmputeVault contract on any EVM chain, or an in-process eth-tester chain by default."""

from compute.chain.client import Chain, ChainEvent, get_chain, reset_chain

__all__ = ["Chain", "ChainEvent", "get_chain", "reset_chain"]
