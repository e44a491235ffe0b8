"""Protocolo's evidence core: Merkle log, signed notes, checkpoints, cosignatures, proofs.

This package is the code of the offline verifier as well as of the ledger, so it imports
only the Python standard library, ``cryptography`` and (for timestamps) ``rfc3161_client``
(an import-linter contract enforces it): a court's expert can read it, run it and trust nothing else of Protocolo.

Modules, one job each:

``merkle``       RFC 6962 hashing, compact ranges (append in O(log n)), proof *generation*
                 from stored perfect-subtree nodes.
``proof``        RFC 9162 inclusion / consistency *verification* and the range
                 (completeness) check of an export.
``note``         C2SP signed-note: parse, open (verify), sign; verifier and signer keys.
``checkpoint``   C2SP tlog-checkpoint bodies and the log origin convention.
``cosignature``  C2SP tlog-cosignature: Ed25519 cosignature/v1, ML-DSA-44 subtree/v1.
``keys``         A verifier for any supported verifier-key string.
``tlog_proof``   C2SP tlog-proof text (offline inclusion proof with its checkpoint).
``leaf``         The bytes of a ledger record's leaf (layout v1).
``policy``       C2SP tlog-policy: logs, witnesses, groups, quorum.
``tiles``        C2SP tlog-tiles addressing (tile paths, tiles of a tree size).
``timestamp``    RFC 3161 tokens, the public face of: ``timestamp_request`` (ask a TSA),
                 ``timestamp_verify`` (verify offline against a pinned chain), ``tsa_trust``
                 (that pinned chain), ``timestamp_errors`` (reasons), ``timestamp_der`` (the
                 few DER structures read without rfc3161-client).

``export``       an audit export's checks: signed manifest, bounding checkpoints, streaming
                 completeness of each partition's leaves (``docs/export-format.md``).

The formats are documented byte by byte in ``docs/evidence-format.md``.
"""
