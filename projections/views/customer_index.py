"""``customer_index``: blind index of CPF and customer code -> protocols; ``erasures``."""

STATEMENTS = (
    """
    INSERT INTO customer_index (index_kind, index_value, protocol_number, opened_at)
    SELECT DISTINCT ON (k.kind, k.value, b.protocol_number) k.kind, k.value, b.protocol_number, b.occurred_at
      FROM batch_events b
     CROSS JOIN LATERAL (VALUES ('cpf', b.payload->'customer'->>'cpf_index'),
                                ('customer_code', b.payload->'customer'->>'customer_code_index')) AS k(kind, value)
     WHERE b.event_type = 'ContactOpened' AND NOT b.is_duplicate AND k.value IS NOT NULL
     ORDER BY k.kind, k.value, b.protocol_number, b.kafka_partition, b.kafka_offset
    ON CONFLICT DO NOTHING
    """,
    """
    INSERT INTO erasures (event_id, subject_ref, key_refs, legal_basis, erased_at)
    SELECT event_id, payload->>'subject_ref',
           ARRAY(SELECT jsonb_array_elements_text(payload->'key_refs')), payload->>'legal_basis', occurred_at
      FROM batch_events
     WHERE event_type = 'CustomerDataErased' AND NOT is_duplicate
    ON CONFLICT DO NOTHING
    """,
)
