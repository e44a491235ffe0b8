"""The ledger's tables and what reads them: migrations (``schema``), the journal writer,
the views (``views/``), the Merkle tree store, the typed read model (``history``) and
rebuild.

Import the modules; this package re-exports nothing.
"""

__all__ = ["history", "integrity", "journal", "merkle_store", "rebuild", "schema"]
