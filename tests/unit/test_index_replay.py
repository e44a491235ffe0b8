"""The index replay's tree (audit_index.ReplayTree) applied in key-ordered chunks, as
`protocolo verify` and the checkpointer apply a long stretch: whatever the chunk size and
however few levels stay held between chunks, the nodes compared are exactly the nodes a
whole update writes, each once, and the root is the one of the transcription of §11
(vindex_oracle); a stored node that does not fit under the established root is refused
before it is built on, and a node the update never reads does not matter.

The previous map state is held in a dict, the way the store's rows would give it (the
replay's reads go through the same NodeFetch interface); the database side is covered by
tests/integration/test_index_replay_tampering.py.
"""

from __future__ import annotations

import hashlib
import random
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from protocolo.attestation.audit_index import ReplayTree, StoredMapUnusable
from protocolo.attestation.index_store import unfit_path_node
from protocolo.evidence.vindex import MapTree, Node, NodeFetch, Position, finished_nodes, list_hash

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "evidence"))
import vindex_oracle as oracle  # noqa: E402


def _key(n: int, crowd: int = 0) -> bytes:
    khash = hashlib.sha256(f"replay key {n}".encode()).digest()
    if crowd:  # keys under one long prefix: long chains of inner nodes between chunks
        mask = (1 << (256 - crowd)) - 1
        khash = ((0x5A << 248) & ~mask | int.from_bytes(khash, "big") & mask).to_bytes(32, "big")
    return khash


def _state(lists: Mapping[bytes, list[int]]) -> tuple[bytes, dict[Position, Node]]:
    tree = MapTree()
    tree.update({k: list_hash(v) for k, v in lists.items()})
    return tree.root(), tree.nodes()


def _fetch(stored: dict[Position, Node]) -> NodeFetch:
    def fetch(positions: Sequence[Position]) -> Mapping[Position, Node]:
        return {p: stored[p] for p in positions if p in stored}
    return fetch


def _replay(before: dict[bytes, list[int]], after: dict[bytes, list[int]], chunk: int,
            held_depth: int, stored: dict[Position, Node] | None = None) -> tuple[bytes, dict[Position, Node]]:
    """Update the map of ``before`` to ``after`` ``chunk`` keys at a time in key order,
    reading the previous state from ``stored``; the root and the nodes compared."""
    root, nodes = _state(before)
    tree = ReplayTree()
    tree.root_hash = root
    tree.reading_from(_fetch(nodes if stored is None else stored))
    changed = sorted(k for k in after if after[k] != before.get(k))
    pending: dict[Position, Node] = {}
    compared: dict[Position, Node] = {}
    for low in range(0, len(changed), chunk):
        part = changed[low:low + chunk]
        later = changed[low + chunk:low + chunk + 1]
        tree.prefetch_paths(part)
        if stored is None:  # what the checkpointer checks before each chunk, too
            assert unfit_path_node(tree, part, tree.root_hash) is None
        tree.check_paths(part, len(before))
        pending.update(tree.update({k: list_hash(after[k]) for k in part}))
        tree.rebuilt(pending)
        done = finished_nodes(pending, int.from_bytes(later[0], "big") if later else None)
        assert not set(done) & set(compared), "a node compared twice"
        compared.update(done)
        tree.forget_below(held_depth, tree.unfinished(pending))
    assert not pending
    return tree.root_hash, compared


def _grown(count: int, extra: int, seed: int, crowd: int = 0) -> tuple[dict[bytes, list[int]], dict[bytes, list[int]]]:
    rng = random.Random(seed)
    before = {_key(n, crowd): sorted(rng.sample(range(100), rng.randint(1, 3))) for n in range(count)}
    after = {k: list(v) for k, v in before.items()}
    for k in rng.sample(sorted(before), min(len(before), extra)):
        after[k].append(100 + rng.randint(0, 50))  # an old key with a new leaf
    for n in range(count, count + extra):
        after[_key(n, crowd)] = [200 + n]  # new keys
    return before, after


@pytest.mark.parametrize(("count", "extra", "chunk", "held_depth", "crowd"), [
    (0, 1, 1, 0, 0), (1, 1, 1, 0, 0), (1, 0, 1, 0, 0), (0, 5, 2, 0, 0), (40, 30, 1, 0, 0),
    (40, 30, 3, 2, 0), (300, 200, 7, 1, 0), (300, 200, 1000, 14, 0), (120, 80, 1, 0, 40),
    (120, 80, 5, 3, 40)])
def test_a_stretch_in_chunks_compares_exactly_the_nodes_a_whole_update_writes(
        count: int, extra: int, chunk: int, held_depth: int, crowd: int) -> None:
    before, after = _grown(count, extra, count + chunk, crowd)
    root, compared = _replay(before, after, chunk, held_depth)
    assert root == oracle.root(after) if after else root == bytes(32)
    whole = MapTree(_fetch(_state(before)[1]))
    assert compared == whole.update({k: list_hash(v) for k, v in after.items()
                                     if v != before.get(k)})


def test_a_stored_node_that_does_not_fit_is_refused_before_use() -> None:
    """A node on a later chunk's path altered in the stored previous state: the replay
    stops there (it cannot build on it), and the checkpointer's check names it too."""
    before, after = _grown(200, 60, 9)
    root, nodes = _state(before)
    last = max(k for k in after if after[k] != before.get(k))
    tree = MapTree(_fetch(nodes))
    tree.prefetch_paths([last])
    _, leaf = tree.path(last)
    position = next(p for p, n in nodes.items() if n == leaf)
    altered = dict(nodes)
    altered[position] = Node(hashlib.sha256(b"other").digest(), leaf.leaf_key if leaf else None,
                             leaf.list_hash if leaf else None)
    with pytest.raises(StoredMapUnusable, match="at map size 200"):
        _replay(before, after, 5, 0, stored=altered)
    check = MapTree(_fetch(altered))
    check.prefetch_paths([last])
    assert unfit_path_node(check, [last], root) is not None
    assert unfit_path_node(tree, [last], root) is None


def test_a_node_under_a_leaf_is_never_read() -> None:
    """A stored node below a leaf (no key path reaches it): the replay's map and nodes are
    the same with it; verify counts such a row instead (test_index_replay_tampering)."""
    before, after = _grown(50, 20, 11)
    _, nodes = _state(before)
    (depth, prefix), _ = next((p, n) for p, n in sorted(nodes.items()) if n.leaf_key is not None)
    stray = dict(nodes)
    stray[(depth + 1, 2 * prefix)] = Node(hashlib.sha256(b"stray").digest())
    stray[(255, 0)] = Node(hashlib.sha256(b"deep").digest())
    assert _replay(before, after, 3, 0, stored=stray) == _replay(before, after, 3, 0)
