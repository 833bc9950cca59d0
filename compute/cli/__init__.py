"""`cxmpute provider|market|account`: the network from the command line, over the platform API.

Every command goes through the platform client (:mod:`cxmpute.client`), acting as ``CXMPUTE_API_KEY``,
``CXMPUTE_WALLET_KEY`` or else this machine's local wallet. A refusal is not caught here: the root CLI prints it
as one line naming the field. Each command group is a module of its own, mounted by the ``cxmpute.cli`` entry
points: :mod:`compute.cli.account`, :mod:`compute.cli.provider` and :mod:`compute.cli.market`.
"""
