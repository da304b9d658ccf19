"""Mercato on an EVM chain: contract wrappers, deployment and the local devnet.

- :mod:`mercato.chain.client`: ``ChainClient``, the typed async client built from a
  deployment manifest (``.token``, ``.registry``, ``.escrow``).
- :mod:`mercato.chain.manifest`: the manifest every component reads.
- :mod:`mercato.chain.deploy`: deploy the contracts (any chain) or a funded devnet.
- :mod:`mercato.chain.anvil`, :mod:`mercato.chain.devnet`: run anvil; move its clock.
- :mod:`mercato.chain.compile`: compile ``contracts/*.vy`` (cached by source hash).
- :mod:`mercato.chain.contract`, :mod:`mercato.chain.tx`: the generic binding and the
  transaction sender under the typed wrappers.

Nothing is imported here: importing :mod:`mercato.chain` loads no web3.
"""
