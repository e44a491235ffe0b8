"""Integrity fields of journal and quarantine rows: RFC 6962 Merkle leaves, one tree per
partition.

The leaf layout (v1) is defined once, in :mod:`protocolo.evidence.leaf`, because the
offline verifier recomputes leaves without the projector; see docs/evidence-format.md.
"""

from __future__ import annotations

from protocolo.evidence.leaf import record_leaf_hash, record_leaf_input

__all__ = ["leaf_hash", "leaf_input"]

leaf_input = record_leaf_input
leaf_hash = record_leaf_hash
