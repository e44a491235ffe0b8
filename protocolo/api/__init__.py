"""``protocolo serve``: the HTTP API over the read model and the publisher.

Part of the composition root: it may import every layer. Reads go to the projections'
typed read model (:mod:`protocolo.projections.history`); writes are events published
through :class:`~protocolo.producers.publisher.LedgerPublisher`, awaited until projected,
never a write to a view. See docs/api.md.
"""
