"""``protocolo witness``: a real C2SP tlog-witness over HTTP, and the checkpointer as its
client. The witness runs as a real HTTP server (in a thread, and once as the CLI in a
subprocess); the log's checkpoints come from a real projected ledger.

Oracle for cosignatures: the C2SP cosignature/v1 message is rebuilt here from the spec and
checked with pyca/cryptography directly, not with the package's verifier.
"""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from helpers_flow import project, start_runtime
from test_merkle_tree import publish_mixed

from protocolo.attestation.anchoring import WitnessAnchorer, anchor_checkpoints, stored_anchors
from protocolo.attestation.checkpointer import StoredCheckpoint, checkpoint_partitions
from protocolo.attestation.config import AttestationSettings, parse_witnesses
from protocolo.attestation.log_key import LogKey
from protocolo.attestation.witness import Witness, WitnessServer, WitnessState, load_witness_key
from protocolo.attestation.witness_client import add_checkpoint_body
from protocolo.evidence.checkpoint import Checkpoint, sign_checkpoint
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.merkle import consistency_proof
from protocolo.evidence.note import Ed25519NoteSigner, parse_note
from protocolo.projections.merkle_store import node_reader

DEPLOYMENT = "acme-test"
WITNESS_NAME = "auditor.example/w1"


def witness_key_file(directory: Path) -> tuple[Path, str]:
    """A witness key file made by the CLI (``witness keygen``); its printed vkey."""
    path = directory / "witness.key"
    out = subprocess.run([str(Path(sys.executable).parent / "protocolo"), "witness", "keygen",
                          "--name", WITNESS_NAME, "--out", str(path)],
                         capture_output=True, text=True, check=True)
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    return path, out.stdout.strip()


def spec_cosignature_ok(vkey: str, note_text: bytes, line: str) -> int:
    """C2SP tlog-cosignature v1 checked from the spec: returns the timestamp."""
    name, key_id, key64 = vkey.split("+", 2)
    raw_key = base64.b64decode(key64)
    assert raw_key[0] == 0x04
    prefix = f"— {name} "
    assert line.startswith(prefix) and line.endswith("\n")
    payload = base64.b64decode(line[len(prefix):-1])
    assert payload[:4].hex() == key_id and len(payload) == 4 + 8 + 64
    timestamp = int.from_bytes(payload[4:12], "big")
    message = b"cosignature/v1\ntime " + str(timestamp).encode() + b"\n" + note_text
    Ed25519PublicKey.from_public_bytes(raw_key[1:]).verify(payload[12:], message)
    return timestamp


def post(url: str, body: bytes) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url + "/add-checkpoint", data=body, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, answer.headers["Content-Type"], answer.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read()


@pytest.fixture
def ledger(settings) -> Any:
    rt = start_runtime(settings)
    publish_mixed(rt, 24)
    project(rt)
    return rt


def witness_for(state_dir: Path, key_file: Path, log_key: LogKey, topic: str) -> WitnessServer:
    logs = [verifier_from_key(log_key.vkey(f"protocolo/{DEPLOYMENT}/{topic}/{p}")) for p in range(4)]
    return WitnessServer(Witness(load_witness_key(key_file), logs, WitnessState(state_dir)))


def test_the_checkpointer_gets_and_stores_verifiable_cosignatures(ledger, tmp_path) -> None:
    rt, topic = ledger, ledger.settings.topic
    key = LogKey.generate("protocolo/acme-test")
    key_file, witness_vkey = witness_key_file(tmp_path)
    with witness_for(tmp_path / "state", key_file, key, topic) as server:
        (witness,) = parse_witnesses("PROTOCOLO_WITNESSES", f"{witness_vkey}={server.url}")
        with rt.connect(autocommit=True) as conn:
            first = checkpoint_partitions(conn, key, topic, DEPLOYMENT)
            outcomes = anchor_checkpoints(conn, first, [WitnessAnchorer(witness)])
            assert [o.error for o in outcomes] == [None] * len(first)
            publish_mixed(rt, 30)
            project(rt)
            second = checkpoint_partitions(conn, key, topic, DEPLOYMENT)
            outcomes = anchor_checkpoints(conn, second, [WitnessAnchorer(witness)])
            assert [o.error for o in outcomes] == [None] * len(second)
            anchors = {c.partition: stored_anchors(conn, topic, c.partition) for c in first}
    for checkpoint in first + second:
        (line,) = [a.token.decode() for a in anchors[checkpoint.partition]
                   if a.size == checkpoint.size and a.kind == "cosignature"]
        assert spec_cosignature_ok(witness_vkey, checkpoint.text, line) > 0
    # the witness remembers the newest size of each origin (second took the proof path)
    state = WitnessState(tmp_path / "state")
    for checkpoint in second:
        latest = state.latest(checkpoint.origin)
        assert latest is not None and (latest.size, latest.root) == (checkpoint.size, checkpoint.root)


def newest(conn: Any, key: LogKey, topic: str) -> StoredCheckpoint:
    made = checkpoint_partitions(conn, key, topic, DEPLOYMENT)
    return max(made, key=lambda c: c.size)


def test_witness_answers_per_c2sp_and_persists_across_restart(ledger, tmp_path) -> None:
    rt, topic = ledger, ledger.settings.topic
    key = LogKey.generate("protocolo/acme-test")
    key_file, witness_vkey = witness_key_file(tmp_path)
    state_dir = tmp_path / "state"
    with rt.connect(autocommit=True) as conn:
        cp = newest(conn, key, topic)
        read = node_reader(conn, topic, cp.partition)
        half = cp.size // 2
        half_cp = sign_checkpoint(Checkpoint(cp.origin, half, _root(read, half)),
                                  [key.signer(cp.origin)])
        with witness_for(state_dir, key_file, key, topic) as server:
            # first contact at size `half`
            status, _, body = post(server.url, add_checkpoint_body(0, [], half_cp))
            assert status == 200, body
            assert spec_cosignature_ok(witness_vkey, parse_note(half_cp).text.encode(), body.decode())
            # old must be what the witness last cosigned: 409 with that size
            status, content_type, body = post(server.url, add_checkpoint_body(0, [], cp.note))
            assert (status, content_type, body) == (409, "text/x.tlog.size", f"{half}\n".encode())
            # a proof that does not prove: 422, nothing cosigned, state unchanged
            good = consistency_proof(half, cp.size, read)
            bad = [bytes(32)] + good[1:]
            status, _, body = post(server.url, add_checkpoint_body(half, bad, cp.note))
            assert status == 422, body
            # an inconsistent checkpoint, properly signed by the log: 422
            forged = sign_checkpoint(Checkpoint(cp.origin, cp.size, bytes(32)), [key.signer(cp.origin)])
            assert post(server.url, add_checkpoint_body(half, good, forged))[0] == 422
            # same size, another root (a fork): 409
            fork = sign_checkpoint(Checkpoint(cp.origin, half, bytes(31) + b"\x01"), [key.signer(cp.origin)])
            assert post(server.url, add_checkpoint_body(half, [], fork))[0] == 409
            # equal sizes need an empty proof
            assert post(server.url, add_checkpoint_body(half, good[:1], half_cp))[0] == 422
            # old > new: 400; unknown origin: 404; not signed by the log's key: 403
            assert post(server.url, add_checkpoint_body(cp.size + 1, [], cp.note))[0] == 400
            stranger = Ed25519NoteSigner.generate("protocolo/other/t/0")
            other = sign_checkpoint(Checkpoint("protocolo/other/t/0", 1, bytes(32)), [stranger])
            assert post(server.url, add_checkpoint_body(0, [], other))[0] == 404
            impostor = Ed25519NoteSigner.generate(cp.origin)
            assert post(server.url, add_checkpoint_body(
                half, good, sign_checkpoint(cp.checkpoint, [impostor])))[0] == 403
            assert post(server.url, b"garbage")[0] == 400
        # restart: a new server on the same state still knows size `half` ...
        with witness_for(state_dir, key_file, key, topic) as server:
            status, _, body = post(server.url, add_checkpoint_body(0, [], cp.note))
            assert (status, body) == (409, f"{half}\n".encode())
            # ... and the client takes the 409 and resends from there (its own record says 0)
            (witness,) = parse_witnesses("PROTOCOLO_WITNESSES", f"{witness_vkey}={server.url}")
            conn.execute("DELETE FROM checkpoint_anchors")
            when = WitnessAnchorer(witness).anchor(conn, cp)
            (anchor,) = [a for a in stored_anchors(conn, topic, cp.partition, cp.size)]
            assert spec_cosignature_ok(witness_vkey, cp.text, anchor.token.decode()) == int(when.timestamp())


def _root(read: Any, size: int) -> bytes:
    from protocolo.evidence.merkle import fold, range_nodes

    return fold(list(read(range_nodes(0, size))))


def test_witness_serve_cli_runs_until_sigterm(ledger, tmp_path) -> None:
    rt, topic = ledger, ledger.settings.topic
    key = LogKey.generate("protocolo/acme-test")
    key_file, witness_vkey = witness_key_file(tmp_path)
    vkeys = tmp_path / "logs.txt"
    vkeys.write_text("# the ledger's partitions\n" + "".join(
        key.vkey(f"protocolo/{DEPLOYMENT}/{topic}/{p}") + "\n" for p in range(4)))
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "protocolo"), "witness", "serve", "--key", str(key_file),
         "--state", str(tmp_path / "state"), "--listen", "127.0.0.1:0", "--log-vkeys-file", str(vkeys)],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        banner = process.stderr.readline() if process.stderr else ""
        assert "serving http://127.0.0.1:" in banner, banner
        url = banner.split("serving ")[1].split("/add-checkpoint")[0]
        with rt.connect(autocommit=True) as conn:
            cp = newest(conn, key, topic)
        status, _, body = post(url, add_checkpoint_body(0, [], cp.note))
        assert status == 200
        spec_cosignature_ok(witness_vkey, cp.text, body.decode())
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    assert (tmp_path / "state").is_dir()


def test_witness_settings_name_the_bad_entry(tmp_path) -> None:
    from protocolo.core.config import ConfigError

    with pytest.raises(ConfigError, match="PROTOCOLO_WITNESSES: entry 'nonsense=x'"):
        AttestationSettings.from_env({"PROTOCOLO_WITNESSES": "nonsense=x,y"})
    log_vkey = LogKey.generate("a/log").vkey("a/log")
    with pytest.raises(ConfigError, match="type 0x01"):
        AttestationSettings.from_env({"PROTOCOLO_WITNESSES": f"{log_vkey}=http://127.0.0.1:1"})
    with pytest.raises(ConfigError, match="tlog-policy"):
        AttestationSettings.from_env({"PROTOCOLO_WITNESSES": str(tmp_path / "missing.policy")})



def test_witnesses_from_a_tlog_policy_file(tmp_path) -> None:
    log = LogKey.generate("protocolo/acme/t/0")
    w1 = CosignatureV1Signer.generate("auditor.example/w1")
    w2 = CosignatureV1Signer.generate("notary.example/w2")
    policy = tmp_path / "witnesses.policy"
    policy.write_text(
        f"log {log.vkey('protocolo/acme/t/0')}\n"
        f"witness auditor {w1.verifier} http://127.0.0.1:8123\n"
        f"witness notary {w2.verifier}\n"  # no URL: verified by readers, not asked
        "group both all auditor notary\nquorum both\n")
    settings = AttestationSettings.from_env({"PROTOCOLO_WITNESSES": str(policy)})
    assert [(w.name, w.url, w.key.key_id) for w in settings.witnesses] == [
        ("auditor.example/w1", "http://127.0.0.1:8123", w1.key_id)]
