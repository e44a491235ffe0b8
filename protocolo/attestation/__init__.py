"""Attestation: what the ledger says about itself, signed and handed out.

Proof-of-service bundles (``bundle_pack``: the pure assembly of a bundle's files;
``bundle_writer``: reading one contact's evidence from PostgreSQL), the standalone verifier
shipped in every bundle (``standalone_verifier``) and the human-readable summary
(``bundle_summary``). The offline verification itself lives in ``protocolo.evidence.bundle``.
"""
