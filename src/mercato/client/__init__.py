"""Client-side SDK: verification of receipts and attestation (payments come later)."""
