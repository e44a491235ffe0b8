"""Publishing: :class:`~protocolo.producers.publisher.LedgerPublisher`, the protocol-number
issuer, the registry's tables, the simulator and the jobs that publish (retention sweeper,
erasure).

Import the modules; this package re-exports nothing.
"""

__all__ = ["erasure", "ledger_topic", "protocol_issuer", "publisher", "registry", "retention", "simulator"]
