"""``verify-restore`` finds where each restored record came from in the mapping's runs.

The oracle is the runs expanded by hand into one entry per restored offset (what the proof
did before it looked the runs up instead); every offset around and between the runs must
get the same answer, including the unmapped ones.
"""

from __future__ import annotations

import random

import pytest

from protocolo.attestation.topic_restore import MappingRuns
from protocolo.evidence.export import ExportFailure


def expanded(runs: list[list[int]]) -> dict[int, tuple[int, int]]:
    out: dict[int, tuple[int, int]] = {}
    for new, old, leaf, length in runs:
        for i in range(length):
            out[new + i] = (old + i, leaf + i)
    return out


def runs_with_gaps(rng: random.Random, count: int) -> list[list[int]]:
    """Runs as a restore writes them (leaves in order, old offsets with gaps), with gaps in
    the new offsets too so that some offsets are unmapped."""
    runs, new, old, leaf = [], rng.randrange(0, 5), rng.randrange(0, 50), 0
    for _ in range(count):
        length = rng.randrange(1, 40)
        runs.append([new, old, leaf, length])
        new += length + rng.choice((0, 0, 1, 7))
        old += length + rng.randrange(1, 9)
        leaf += length
    return runs


@pytest.mark.parametrize("seed", range(20))
def test_every_offset_gets_the_origin_the_expanded_runs_give(seed: int) -> None:
    rng = random.Random(seed)
    runs = runs_with_gaps(rng, rng.randrange(1, 30))
    oracle = expanded(runs)
    shuffled = runs[:]
    rng.shuffle(shuffled)  # the lookup does not rely on the document's order
    lookup = MappingRuns(shuffled, "partition 0")
    last = max(oracle)
    for offset in range(-3, last + 10):
        assert lookup.locate(offset) == oracle.get(offset), offset


def test_a_single_run_of_a_whole_partition() -> None:
    lookup = MappingRuns([[0, 0, 0, 1_670_714]], "partition 0")
    assert lookup.locate(0) == (0, 0)
    assert lookup.locate(1_670_713) == (1_670_713, 1_670_713)
    assert lookup.locate(1_670_714) is None


def test_overlapping_runs_name_no_single_origin_and_are_refused() -> None:
    with pytest.raises(ExportFailure) as refused:
        MappingRuns([[0, 0, 0, 10], [9, 20, 10, 5]], "partition 3")
    assert refused.value.reason == "mapping-malformed"
    assert refused.value.subject == "partition 3"
    assert "new offset 9 overlaps" in refused.value.detail and "ends at 9" in refused.value.detail


def test_an_empty_run_is_refused() -> None:
    with pytest.raises(ExportFailure) as refused:
        MappingRuns([[0, 0, 0, 4], [4, 4, 4, 0]], "partition 1")
    assert refused.value.reason == "mapping-malformed"
    assert "length 0" in refused.value.detail
