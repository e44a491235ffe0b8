"""The projector: the Kafka run loop (``projector``), the batch processor (``batch``), the
tracking store (``tracking``), the writer thread (``batch_writer``), record decoding and
what the projector does with records PostgreSQL cannot store.

Import the modules; this package re-exports nothing.
"""

__all__ = ["batch", "batch_writer", "decoding", "errors", "projector", "row_isolation", "storable", "tracking", "write_hooks"]
