"""The whole local network in one process tree: anvil, contracts, paid operators, a
router that pays them, a funded demo wallet and an API key (``mercato up``)."""
