"""The examples in docs/evidence-format.md are real: they parse and verify as written."""

from __future__ import annotations

import re

from evidence_vectors import REPO_ROOT

from protocolo.evidence.checkpoint import open_checkpoint
from protocolo.evidence.cosignature import cosignature_timestamp
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.leaf import record_leaf_input
from protocolo.evidence.merkle import leaf_hash, tree_root
from protocolo.evidence.policy import parse_policy

DOC = (REPO_ROOT / "docs" / "evidence-format.md").read_text(encoding="utf-8")
EXAMPLES = dict(re.findall(r"<!-- example: ([a-z-]+) -->\n```\n(.*?)```\n", DOC, re.DOTALL))


def test_all_examples_found() -> None:
    assert set(EXAMPLES) == {"leaf-input", "log-vkey", "witness-vkey", "checkpoint", "policy"}


def test_leaf_input_example() -> None:
    assert bytes.fromhex(EXAMPLES["leaf-input"].replace(" ", "")) == record_leaf_input(
        "ledger", 3, 258, b"k1", b"value"
    )


def test_checkpoint_example_verifies_under_the_policy_example() -> None:
    log = verifier_from_key(EXAMPLES["log-vkey"].strip())
    witness = verifier_from_key(EXAMPLES["witness-vkey"].strip())
    note = EXAMPLES["checkpoint"].encode()
    signed = open_checkpoint(note, [witness], origin=log.name, log_key=log)
    assert signed.checkpoint.size == 5
    reference_leaves = [b"", b"\x00", b"\x10", b"\x20\x21", b"\x30\x31"]
    assert signed.checkpoint.root == tree_root([leaf_hash(x) for x in reference_leaves])
    assert cosignature_timestamp(signed.note.verified[1].signature) == 1_800_000_000
    verified = parse_policy(EXAMPLES["policy"].encode()).verify_checkpoint(note)
    assert verified.witnesses == ("auditor",)
