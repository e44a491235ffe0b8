-- Every event of a contact updates its interactions row (its time span, disclosures, close,
-- note count), several times per contact. On full pages (the default fillfactor of 100)
-- each update writes a new row version elsewhere and a new entry in all six of the table's
-- indexes; with room left on the page, the updates that change no indexed column are HOT
-- (heap-only: no index entry, the old version pruned in place). Measured by
-- bench/projection_bench.py: at fillfactor 100 only 12 % of these updates were HOT.
-- Applies to pages written from now on; existing pages keep their layout until rewritten.
ALTER TABLE interactions SET (fillfactor = 50);
