"""The kernel: what every layer may use, and that imports no layer.

Identifiers (:mod:`.cpf`, :mod:`.protocol_number`), the rejection error every rule
raises (:mod:`.errors`), policy profiles (:mod:`.policy`), personal-data sealing
(:mod:`.personal_data`), the deployment's keys (:mod:`.deployment_keys`), configuration
(:mod:`.config`), database connections and migrations (:mod:`.database`), the
projection watermark (:mod:`.watermark`) and the Kafka client of the publisher and the
projector (:mod:`.kafka_client`, implemented by :mod:`.kafka_python_client` and
:mod:`.confluent_client`). Import the modules themselves; this package
re-exports nothing, so that importing one piece never loads the rest.
"""

__all__: list[str] = []
