"""The evidence layer: what lets the ledger prove itself to someone who does not trust us.

Merkle log, signed checkpoints, proofs, external anchoring (RFC 3161 timestamps, witness
cosignatures) and their offline verification. Each concern is its own module; the modules an
offline verifier needs import only the standard library and ``cryptography`` (plus
``rfc3161_client`` for timestamps).
"""
