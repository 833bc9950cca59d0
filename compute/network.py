"""The compute network's services wired together: one store, one chain, its EIP-712 domain, one market."""

from __future__ import annotations

import threading

from compute.chain import Chain, get_chain
from compute.market.matching import Market
from compute.receipts import Domain
from compute.store import Store, get_store


class Network:
    def __init__(self, store: Store | None = None, chain: Chain | None = None):
        self.store = store or get_store()
        self.chain = chain or get_chain()
        self.domain = Domain(chain_id=self.chain.chain_id, verifying_contract=self.chain.vault_address)
        self.market = Market(self.store, self.domain)


_network: Network | None = None
_lock = threading.Lock()


def get_network(create: bool = True) -> Network | None:
    """The network the API and CLI act on; with ``create=False``, None until something has used it."""
    global _network
    with _lock:
        if _network is None and create:
            _network = Network()
        return _network


def use_network(network: Network | None) -> None:
    """Make ``network`` the one the API and CLI act on (None: build it from the settings on next use)."""
    global _network
    with _lock:
        _network = network
