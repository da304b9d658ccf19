"""Mercato: private, verifiable, pay-per-token LLM inference from independent operators."""

__version__ = "0.1.0"
