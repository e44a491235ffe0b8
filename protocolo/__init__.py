"""Protocolo: an event-sourced audit ledger of customer-service interactions.

The design's layers install under this one namespace: ``protocolo.schemas`` (the wire
contract), ``protocolo.producers`` (publishing), ``protocolo.consumers`` (the projector),
``protocolo.projections`` (PostgreSQL views and queries). This package ties them together:
configuration, the embedded dev stack and the command line.
"""

__version__ = "0.1.0"
