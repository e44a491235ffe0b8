"""The writing side of the evidence layer: signs, publishes and anchors tree heads, and
hands out proof-of-service bundles.

:mod:`protocolo.evidence` verifies (pure, offline); this package *produces* what it verifies,
so it may use PostgreSQL, Kafka and HTTP. It imports the kernel, the evidence core, the
projections' Merkle store and read model, never the consumers or the composition root (an
import-linter contract enforces it).

Modules, one job each:

``log_key``       the log's Ed25519 signing key (``PROTOCOLO_SIGNING_KEY`` or a dev key file),
                  one key name per origin.
``config``        the checkpointer's ``PROTOCOLO_*`` settings.
``checkpointer``  sign, verify-before-sign, store the checkpoint of each partition.
``publication``   the ``protocolo.checkpoints`` Kafka topic.
``cadence``       when a partition is due (every N leaves or T seconds) and the daemon loop.
``anchoring``     RFC 3161 tokens and witness cosignatures stored in ``checkpoint_anchors``.
``witness``       a C2SP tlog-witness (``protocolo witness serve``) and its client.
``bundle_writer`` one contact's evidence read from PostgreSQL, as a proof-of-service bundle.
``bundle_pack``     the bundle's files; its readable parts come from protocolo.evidence.readable.
``standalone_verifier``  the bundle's ``verify.py``: the offline verifier's modules inlined.
``ledger_audit``  ``protocolo verify``: every leaf and tree recomputed from the rows
                  (with ``audit_checkpoints``, ``audit_kafka``, ``audit_findings``).

``export_period`` / ``export_writer`` / ``export_rendering`` / ``export_readme`` / ``export_personal``
                  a regulator's audit export of a period (bounding checkpoints, streamed files,
                  the renderings rule, README.txt, revealed personal data).
``export_verify`` ``protocolo verify-export``: reads the container (fastavro), re-derives the
                  renderings; the cryptographic checks are ``protocolo.evidence.export``.
``compliance_report`` / ``report_render``  the compliance report from a verified export.
``topic_restore`` republish the journal to a lost topic, and prove it against the roots.

Formats and configuration: ``docs/checkpoints.md``, ``docs/evidence-format.md`` §9,
``docs/export-format.md``.
"""
