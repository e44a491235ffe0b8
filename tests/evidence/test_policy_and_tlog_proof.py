"""tlog-policy parsing and quorums; tlog-proof files end to end."""

from __future__ import annotations

import itertools

import pytest
from evidence_vectors import load

from protocolo.evidence.checkpoint import Checkpoint, log_origin, sign_checkpoint
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.evidence.errors import EvidenceError, NoteError, PolicyError, ProofError
from protocolo.evidence.merkle import CompactRange, NodeId, inclusion_proof, leaf_hash
from protocolo.evidence.note import Ed25519NoteSigner, parse_note, sign_note
from protocolo.evidence.policy import parse_policy
from protocolo.evidence.tlog_proof import (
    HEADER,
    TlogProof,
    make_tlog_proof,
    parse_tlog_proof,
    verify_tlog_proof,
)

WITNESSED = load("checkpoint/witnessed-ed25519.json")
CLOCK = 1_800_000_000


def _witness(name: str) -> CosignatureV1Signer:
    return CosignatureV1Signer.generate(name, clock=lambda: CLOCK)


def test_real_witnessed_checkpoint_under_a_three_of_four_policy() -> None:
    w = WITNESSED["vkeys"]["witnesses"]
    policy = parse_policy(
        (
            "# CT staging log and the four witnesses that cosigned it\n"
            f"log {WITNESSED['vkeys']['log']} https://example.invalid/\n"
            f"witness little-garden {w[0]}\n"
            f"  witness\tsmartit {w[1]}   \n"
            f"witness remora {w[2]}\nwitness stagemole {w[3]}\n\n"
            "group three 3 little-garden smartit remora stagemole\nquorum three\n"
        ).encode()
    )
    verified = policy.verify_checkpoint(WITNESSED["note"].encode())
    assert verified.witnesses == ("little-garden", "smartit", "remora", "stagemole")
    assert verified.log.url == "https://example.invalid/"
    assert verified.signed.checkpoint.size == WITNESSED["parsed"]["size"]


def _policy_text(
    log: Ed25519NoteSigner, witnesses: dict[str, CosignatureV1Signer], tail: str
) -> bytes:
    lines = [f"log {log.verifier}"] + [f"witness {n} {s.verifier}" for n, s in witnesses.items()]
    return ("\n".join(lines) + "\n" + tail).encode()


def _cosigned(log: Ed25519NoteSigner, signers: list[CosignatureV1Signer], cp: Checkpoint) -> bytes:
    note = sign_checkpoint(cp, [log])
    if not signers:
        return note
    return sign_note(cp.body(), signers, keep=parse_note(note).signatures)


def test_quorum_of_groups_c2sp_example_shape() -> None:
    """X-witnesses 2-of-3 and any Y-witness, both required (the spec's example)."""
    origin = log_origin("acme", "ledger", 0)
    log = Ed25519NoteSigner.generate(origin)
    ws = {n: _witness(f"{n.lower()}.example") for n in ("X1", "X2", "X3", "Y1", "Y2", "Y3")}
    policy = parse_policy(
        _policy_text(
            log,
            ws,
            "group X-witnesses 2 X1 X2 X3\ngroup Y-witnesses any Y1 Y2 Y3\n"
            "group X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n",
        )
    )
    cp = Checkpoint(origin, 3, bytes(32))
    for r in range(0, 7):
        for names in itertools.combinations(ws, r):
            xs = sum(1 for n in names if n.startswith("X"))
            ys = sum(1 for n in names if n.startswith("Y"))
            expected = xs >= 2 and ys >= 1
            assert policy.satisfied_by(names) == expected
            note = _cosigned(log, [ws[n] for n in names], cp)
            if expected:
                assert set(policy.verify_checkpoint(note, origin).witnesses) == set(names)
            else:
                with pytest.raises(PolicyError) as failure:
                    policy.verify_checkpoint(note, origin)
                assert failure.value.reason == "quorum-not-met"


def test_quorum_none_needs_only_the_log_and_the_log_must_be_the_origin() -> None:
    origin = log_origin("acme", "ledger", 1)
    log = Ed25519NoteSigner.generate(origin)
    policy = parse_policy(f"log {log.verifier}\nquorum none\n".encode())
    cp = Checkpoint(origin, 1, bytes(32))
    policy.verify_checkpoint(_cosigned(log, [], cp))
    # a log key of the policy that signs a checkpoint for another origin does not count
    other = Checkpoint(log_origin("acme", "ledger", 2), 1, bytes(32))
    with pytest.raises(PolicyError) as failure:
        policy.verify_checkpoint(sign_checkpoint(other, [log]))
    assert failure.value.reason == "no-log-signature"
    # a log not in the policy: nothing verifies
    stranger = Ed25519NoteSigner.generate(origin)
    with pytest.raises(NoteError) as refused:
        policy.verify_checkpoint(sign_checkpoint(cp, [stranger]))
    assert refused.value.reason == "no-verifiable-signature"


@pytest.mark.parametrize(
    ("tail", "why"),
    [
        ("", "no quorum"),
        ("quorum none\nquorum none\n", "two quorums"),
        ("quorum nobody\n", "undefined quorum"),
        ("quorum W\ngroup G any W\n", "fine: group after quorum is allowed"),
        ("group G any Z\nquorum G\n", "undefined member"),
        ("group G any W W\nquorum G\n", "member twice"),
        ("group G 2 W\nquorum G\n", "k > n"),
        ("group G 0 W\nquorum G\n", "k = 0"),
        ("group G 01 W\nquorum G\n", "k with leading zero"),
        ("group G any\nquorum G\n", "no members"),
        ("group W any W\nquorum W\n", "name reused"),
        ("group none any W\nquorum none\n", "reserved name"),
        ("witness W2 {W}\nquorum none\n", "duplicate witness key"),
        ("log {LOG}\nquorum none\n", "duplicate log key"),
        ("log {W}\nquorum none\n", "witness key type used for a log"),
        ("witness L {LOG}\nquorum none\n", "log key type used for a witness"),
        ("frobnicate x\nquorum none\n", "unknown keyword"),
        ("quorum none\r\n", "control character"),
        ("witness V notakey\nquorum none\n", "bad vkey"),
    ],
)
def test_malformed_policies_are_named(tail: str, why: str) -> None:
    log = Ed25519NoteSigner.generate("example.com/log")
    w = _witness("w.example")
    text = _policy_text(
        log, {"W": w}, tail.replace("{W}", str(w.verifier)).replace("{LOG}", str(log.verifier))
    )
    if why.startswith("fine"):
        parse_policy(text)
        return
    with pytest.raises(PolicyError) as failure:
        parse_policy(text)
    assert failure.value.reason == "malformed-policy", why


def _ledger(size: int) -> tuple[list[bytes], dict[NodeId, bytes], bytes]:
    leaves = [leaf_hash(f"record {i}".encode()) for i in range(size)]
    state = CompactRange()
    store: dict[NodeId, bytes] = {}
    for leaf in leaves:
        store.update((n, h) for n, h in state.append(leaf))
    return leaves, store, state.root()


def test_tlog_proof_round_trip_and_verification() -> None:
    origin = log_origin("acme", "ledger", 0)
    log = Ed25519NoteSigner.generate(origin)
    auditor = _witness("auditor.example")
    policy = parse_policy(_policy_text(log, {"auditor": auditor}, "quorum auditor\n"))
    leaves, store, root = _ledger(21)
    note = _cosigned(log, [auditor], Checkpoint(origin, 21, root))
    for index in (0, 7, 20):
        path = inclusion_proof(index, 21, lambda ids: [store[i] for i in ids])
        data = make_tlog_proof(index, path, note, extra=b"offset=1234" if index == 7 else None)
        parsed = parse_tlog_proof(data)
        assert parsed == TlogProof(index, tuple(path), note, b"offset=1234" if index == 7 else None)
        assert parsed.encode() == data
        verified = verify_tlog_proof(data, leaves[index], policy, origin)
        assert verified.witnesses == ("auditor",)
        with pytest.raises(ProofError) as wrong_leaf:
            verify_tlog_proof(data, leaves[index - 1], policy, origin)
        assert wrong_leaf.value.reason == "root-mismatch"
    # the same proof without the witness's line does not meet the quorum
    bare = make_tlog_proof(
        0,
        inclusion_proof(0, 21, lambda ids: [store[i] for i in ids]),
        sign_checkpoint(Checkpoint(origin, 21, root), [log]),
    )
    with pytest.raises(PolicyError):
        verify_tlog_proof(bare, leaves[0], policy, origin)


def test_tampering_with_any_byte_of_a_tlog_proof_is_refused() -> None:
    origin = log_origin("acme", "ledger", 0)
    log = Ed25519NoteSigner.generate(origin)
    policy = parse_policy(f"log {log.verifier}\nquorum none\n".encode())
    leaves, store, root = _ledger(6)
    path = inclusion_proof(5, 6, lambda ids: [store[i] for i in ids])
    data = make_tlog_proof(5, path, sign_checkpoint(Checkpoint(origin, 6, root), [log]))
    verify_tlog_proof(data, leaves[5], policy)
    for position in range(len(data)):
        for flip in (0x01, 0x20):
            tampered = data[:position] + bytes([data[position] ^ flip]) + data[position + 1 :]
            with pytest.raises(EvidenceError):
                verify_tlog_proof(tampered, leaves[5], policy)


def test_c2sp_example_proof_parses() -> None:
    example = (
        "c2sp.org/tlog-proof@v1\n"
        "extra YWdlLXYxLjIuMS1kYXJ3aW4tYXJtNjQudGFyLmd6\n"
        "index 73894\n"
        "gSKyXoYZUgZ6jduWYrkDOARinOMGJveXjgMkBTcdPlQ=\n"
        "B95lDa8R83lS8n0eG+o0buTxRKQTYFi//1U8anccXmA=\n"
        "EKNzoDWG8LGC0Yp9o+sv3qllpMP9uHQ9B20KNL+Q1zs=\n"
        "RoopEkOdqkYqMB4MJXrbt/hMjOxsVn0IrWjpz1ZMMes=\n"
        "AHCioX9nLjsrse6YhjRRmk1WUEirVOLLRoOQ6vfO5vk=\n"
        "\n"
        "example.com/fancylog\n109482\nsFodV/vSp5O8n9a8QpW6PRY97tfOSW5bsc2Xl/EQi08=\n\n"
        "\u2014 example.com/fancylog hI2DJw[...]1roloI=\n"
    ).encode()
    proof = parse_tlog_proof(example)
    assert proof.index == 73894
    assert len(proof.path) == 5
    assert proof.extra == b"age-v1.2.1-darwin-arm64.tar.gz"
    assert proof.checkpoint.startswith(b"example.com/fancylog\n109482\n")


@pytest.mark.parametrize(
    "head",
    [
        "c2sp.org/tlog-proof@v2\nindex 0\n",
        f"{HEADER}\nindex 01\n",
        f"{HEADER}\nindex -1\n",
        f"{HEADER}\nindex 0\nAAAA\n",
        f"{HEADER}\nextra \nindex 0\n",
        f"{HEADER}\n",
        f"{HEADER}\nindex 0\n" + "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" * 65,
    ],
)
def test_malformed_tlog_proofs(head: str) -> None:
    with pytest.raises(ProofError) as failure:
        parse_tlog_proof(
            head.encode() + b"\nlog\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"
        )
    assert failure.value.reason == "malformed-tlog-proof"
