"""Attestation: the ledger's signed statements about itself and the auditor's checks of them."""
