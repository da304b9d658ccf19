"""The operator node: an OpenAI-compatible server that meters, signs and (later) gets paid."""
