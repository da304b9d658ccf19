"""The router: one OpenAI-compatible endpoint over every operator and hosted provider.

Discovery from the chain, pure selection, forwarding with failover and circuit
breaking, receipt checks, credits, history. Nothing is built at import time: see
:func:`mercato.router.app.create_app`.
"""
