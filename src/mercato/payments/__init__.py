"""Getting paid per token: pricing, spend authorizations, payment channels, x402.

Pure rules live in ``pricing``, ``wire``, ``spendauth`` and ``channels``; ``service`` is
the one module that does I/O on the request path (database, cached chain state), and
``settlement`` batches claims on-chain in the background.
"""
