"""The wire contract: the ``.avsc`` files (``avro/``), the single-object codec, the schema
catalogue, validation, storability rules, compatibility checks and test vectors.

Import the modules; this package re-exports nothing, so importing one never loads the rest.
"""

__all__ = ["catalogue", "codec", "compatibility", "storable", "validation", "vectors_tool"]
