"""Protocolo: an event-sourced audit ledger of customer-service interactions.

The design's layers install under this one namespace: ``protocolo.core`` (the kernel),
``protocolo.schemas`` (the wire contract), ``protocolo.producers`` (publishing),
``protocolo.consumers`` (the projector), ``protocolo.projections`` (PostgreSQL tables,
views and queries) and ``protocolo.evidence`` (the offline verifier's primitives). This
package itself is the composition root only: the command line (``cli``), the runtime
wiring (``runtime``), the embedded dev stack (``devstack``), the HTTP API (``api``) and
the dispute console (``console``). See docs/architecture.md.
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
