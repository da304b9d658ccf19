"""Keys, keystore, signatures and hashing. No network, no storage."""
