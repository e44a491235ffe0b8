-- The API's contact search by CPF or customer code filters interactions on the blind index
-- and sorts by opening time (projections/history.py, search_contacts). Without these it
-- scanned every contact: bench/scale.py's EXPLAIN showed a sequential scan whose cost grows
-- with the ledger. customer_index serves `history --cpf/--customer`; these serve the search,
-- which also filters and pages on interactions' own columns.
CREATE INDEX interactions_cpf ON interactions (cpf_index, opened_at) WHERE cpf_index IS NOT NULL;
CREATE INDEX interactions_customer_code ON interactions (customer_code_index, opened_at)
    WHERE customer_code_index IS NOT NULL;
-- A contact's timeline reads the retrieval requests that name it or were located to it;
-- `p = ANY(located_protocols)` cannot use an index, so every request was read for every
-- timeline (a scan growing with the ledger). The query now probes this index with `&&`.
CREATE INDEX retrieval_requests_located ON retrieval_requests USING gin (located_protocols);
-- `history --customer` also lists the requests made by customer code; the CPF had an index
-- (retrieval_requests_cpf), the code did not: a scan of every request at 1M events (2.3 ms).
CREATE INDEX retrieval_requests_customer_code ON retrieval_requests (customer_code_index)
    WHERE customer_code_index IS NOT NULL;
