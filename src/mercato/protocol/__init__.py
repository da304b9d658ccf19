"""Pure wire models and rules: OpenAI bodies, receipts, pricing, EIP-712 typed data. No I/O."""
