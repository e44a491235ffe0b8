"""``protocolo checkpoint`` / ``keys`` end to end, with RFC 3161 anchoring by a real local
TSA (OpenSSL ``ts -reply`` behind HTTP, tests/evidence/local_tsa.py) and a real witness.

Independent oracles: ``openssl ts -verify`` for the stored tokens, the verifier keys the
CLI prints for the signatures, a raw consumer for the checkpoints topic.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from evidence.local_tsa import LocalTsa
from helpers_flow import Cli, drain, project, start_runtime
from test_merkle_tree import publish_mixed

from protocolo.attestation.anchoring import stored_anchors
from protocolo.attestation.checkpointer import stored_checkpoints
from protocolo.attestation.log_key import DEV_KEY_FILE, LogKey, SigningKeyError, load_log_key
from protocolo.attestation.witness import Witness, WitnessServer, WitnessState
from protocolo.core.config import Settings
from protocolo.evidence.checkpoint import open_checkpoint
from protocolo.evidence.cosignature import CosignatureV1Signer
from protocolo.evidence.keys import verifier_from_key
from protocolo.evidence.note import open_note
from protocolo.evidence.timestamp import verify_timestamp


@pytest.fixture
def cli(settings, monkeypatch, capsys) -> Cli:
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", "acme-test")
    monkeypatch.setenv("PROTOCOLO_CHECKPOINT_TOPIC", f"{settings.topic}-checkpoints")
    for name in ("PROTOCOLO_SIGNING_KEY", "PROTOCOLO_TSA_URL", "PROTOCOLO_TSA_CHAIN",
                 "PROTOCOLO_WITNESSES"):
        monkeypatch.delenv(name, raising=False)
    return Cli(settings, monkeypatch, capsys)


def all_checkpoints(rt: Any) -> list[Any]:
    with rt.connect() as conn:
        return [c for p in range(4) for c in stored_checkpoints(conn, rt.settings.topic, p)]


def test_checkpoint_once_signs_with_the_dev_key_and_keys_show_prints_its_vkeys(settings, cli) -> None:
    rt = start_runtime(settings)
    publish_mixed(rt, 16)
    project(rt)
    shown = cli("keys", "show")
    assert shown.code == 0, shown.err
    vkeys = shown.out.split()
    assert [v.split("+")[0] for v in vkeys] == [
        f"protocolo/acme-test/{settings.topic}/{p}" for p in range(4)]
    assert cli("checkpoint", "--show-key").out.split() == vkeys
    assert (settings.home / DEV_KEY_FILE).stat().st_mode & 0o777 == 0o600

    done = cli("checkpoint", "--once")
    assert done.code == 0, done.err
    made = all_checkpoints(rt)
    assert made and all(c.published_offset is not None for c in made)
    verifiers = [verifier_from_key(v) for v in vkeys]
    for c in made:
        open_checkpoint(c.note, verifiers, origin=c.origin,
                        log_key=next(v for v in verifiers if v.name == c.origin))
        assert f"{c.origin}: size {c.size}" in done.err
    # nothing grew: nothing new, and it says so
    again = cli("checkpoint", "--once")
    assert again.code == 0 and "no partition's tree grew" in again.err
    assert all_checkpoints(rt) == made
    on_topic = drain(rt.kafka_bootstrap, f"{settings.topic}-checkpoints", partitions=1)
    assert sorted(r.value for r in on_topic) == sorted(c.note for c in made)
    assert "signed checkpoints here" in cli("keys", "show", "--history").out


def test_checkpoint_refuses_over_a_forged_history_with_one_line(settings, cli) -> None:
    rt = start_runtime(settings)
    publish_mixed(rt, 16)
    project(rt)
    assert cli("checkpoint", "--once").code == 0
    publish_mixed(rt, 16)
    project(rt)
    with rt.connect(autocommit=True) as conn:
        conn.execute("UPDATE checkpoints SET root_hash = sha256(root_hash)")
    refused = cli("checkpoint", "--once")
    assert refused.code == 2
    assert refused.err.startswith("protocolo: refusing to sign a checkpoint of ")
    assert "[previous-forged]" in refused.err and "Traceback" not in refused.err
    assert refused.err.count("\n") == 1


def test_bad_signing_key_and_settings_are_named(settings, cli, monkeypatch) -> None:
    monkeypatch.setenv("PROTOCOLO_SIGNING_KEY", "PRIVATE+KEY+x+00000000+AAAA")
    bad = cli("checkpoint", "--once")
    assert bad.code == 2 and "PROTOCOLO_SIGNING_KEY" in bad.err
    monkeypatch.setenv("PROTOCOLO_SIGNING_KEY", LogKey.generate("protocolo/acme").private_key_string())
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", "acme prod")
    bad = cli("checkpoint", "--once")
    assert bad.code == 2 and "PROTOCOLO_DEPLOYMENT='acme prod'" in bad.err
    monkeypatch.setenv("PROTOCOLO_DEPLOYMENT", "acme")
    monkeypatch.setenv("PROTOCOLO_TSA_URL", "http://127.0.0.1:1/")
    bad = cli("checkpoint", "--once")
    assert bad.code == 2 and "PROTOCOLO_TSA_CHAIN" in bad.err
    # a deployment with configured services never invents a signing key
    with pytest.raises(SigningKeyError, match="PROTOCOLO_SIGNING_KEY is not set"):
        load_log_key(Settings(home=settings.home, database_url="postgresql://x/y", dev_keys=False),
                     "acme", environ={})


def test_checkpoint_once_anchors_with_a_real_tsa_and_a_witness(settings, cli, monkeypatch,
                                                               tmp_path) -> None:
    rt = start_runtime(settings)
    publish_mixed(rt, 16)
    project(rt)
    key = LogKey.generate("protocolo/acme-test")
    monkeypatch.setenv("PROTOCOLO_SIGNING_KEY", key.private_key_string())
    witness_key = CosignatureV1Signer.generate("notary.example/w")
    origins = [f"protocolo/acme-test/{settings.topic}/{p}" for p in range(4)]
    logs = [verifier_from_key(key.vkey(o)) for o in origins]
    with LocalTsa(tmp_path / "tsa", intermediate=True) as tsa, \
            WitnessServer(Witness(witness_key, logs, WitnessState(tmp_path / "w"))) as witness:
        chain = tmp_path / "chain.pem"
        chain.write_bytes(tsa.tsa_pem_path.read_bytes() + tsa.intermediates_pem_path.read_bytes()
                          + tsa.root_pem_path.read_bytes())
        tsa_url = tsa.url
        monkeypatch.setenv("PROTOCOLO_TSA_URL", tsa_url)
        monkeypatch.setenv("PROTOCOLO_TSA_CHAIN", str(chain))
        monkeypatch.setenv("PROTOCOLO_WITNESSES", f"{witness_key.verifier}={witness.url}")
        done = cli("checkpoint", "--once")
        assert done.code == 0, done.err
        made = all_checkpoints(rt)
        # an unchanged tree re-anchored on demand: a second, later token for the same note
        # (anchors are keyed by their time, to the second: let the second change)
        time.sleep(1.1)
        forced = cli("checkpoint", "--once", "--force", "--partition", str(made[0].partition))
        assert forced.code == 0, forced.err
    with rt.connect() as conn:
        anchors = {c.partition: stored_anchors(conn, settings.topic, c.partition) for c in made}
    for c in made:
        kinds = sorted(a.kind for a in anchors[c.partition])
        expected = 2 if c.partition == made[0].partition else 1
        assert kinds == ["cosignature"] * expected + ["rfc3161"] * expected, (c.partition, kinds)
        for a in anchors[c.partition]:
            if a.kind == "rfc3161":
                assert a.authority == tsa_url and a.request is not None
                verified = verify_timestamp(a.token, c.text, tsa.trust(), request_der=a.request)
                assert verified.gen_time == a.anchored_at
                openssl_verifies(tmp_path, c.text, a.token, tsa)
            else:
                assert a.authority == "notary.example/w"
                opened = open_note(c.note + a.token, [witness_key.verifier])
                assert opened.verified_by(witness_key.name, witness_key.key_id)


def openssl_verifies(directory: Path, text: bytes, token: bytes, tsa: LocalTsa) -> None:
    (directory / "note.txt").write_bytes(text)
    (directory / "token.tsr").write_bytes(token)
    untrusted = directory / "untrusted.pem"
    untrusted.write_bytes(tsa.tsa_pem_path.read_bytes() + tsa.intermediates_pem_path.read_bytes())
    result = subprocess.run(
        ["openssl", "ts", "-verify", "-data", str(directory / "note.txt"), "-in",
         str(directory / "token.tsr"), "-CAfile", str(tsa.root_pem_path), "-untrusted", str(untrusted)],
        capture_output=True, text=True, check=False)
    assert result.returncode == 0 and "Verification: OK" in result.stdout, result.stdout + result.stderr


def test_checkpoint_daemon_signs_as_the_tree_grows_and_stops_on_sigterm(settings, tmp_path) -> None:
    rt = start_runtime(settings)
    publish_mixed(rt, 12)
    project(rt)
    env = {**os.environ, "PROTOCOLO_HOME": str(settings.home),
           "PROTOCOLO_KAFKA_BOOTSTRAP": rt.kafka_bootstrap, "PROTOCOLO_DATABASE_URL": rt.database_url,
           "PROTOCOLO_TOPIC": settings.topic, "PROTOCOLO_PARTITIONS": "4", "PROTOCOLO_DEV_KEYS": "1",
           "PROTOCOLO_DEPLOYMENT": "acme-test",
           "PROTOCOLO_CHECKPOINT_TOPIC": f"{settings.topic}-checkpoints"}
    process = subprocess.Popen(
        [str(Path(sys.executable).parent / "protocolo"), "checkpoint", "--every-leaves", "1",
         "--every-seconds", "3600"], env=env, stderr=subprocess.PIPE, text=True)
    try:
        first = wait_for(lambda: _sizes(rt), lambda sizes: bool(sizes))
        publish_mixed(rt, 12)
        project(rt)
        grown = wait_for(lambda: _sizes(rt), lambda sizes: any(
            len(v) > 1 for v in sizes.values()))
        assert all(grown[p][0] == first[p][0] for p in first)
    finally:
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    err = process.stderr.read() if process.stderr else ""
    assert code == 0, err
    assert "checkpointer stopped after signing" in err


def _sizes(rt: Any) -> dict[int, list[int]]:
    with psycopg.connect(rt.database_url) as conn:
        sizes: dict[int, list[int]] = {}
        for p, s in conn.execute("SELECT kafka_partition, tree_size FROM checkpoints"
                                 " ORDER BY kafka_partition, tree_size"):
            sizes.setdefault(p, []).append(s)
        return sizes


def wait_for(read: Any, done: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = read()
        if done(value):
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {value}")
        time.sleep(0.2)


def test_the_daemon_re_anchors_an_unchanged_tree_every_period(settings, tmp_path) -> None:
    """EVIDENCE.md §7: an empty period still gets a fresh timestamp of the same checkpoint."""
    import threading

    from protocolo.attestation.anchoring import TsaAnchorer, anchor_checkpoints
    from protocolo.attestation.cadence import Cadence, run_checkpointer

    rt = start_runtime(settings)
    publish_mixed(rt, 8)
    project(rt)
    key = LogKey.generate("protocolo/acme-test")
    stop = threading.Event()
    with LocalTsa(tmp_path / "tsa") as tsa, rt.connect(autocommit=True) as conn:
        anchorer = TsaAnchorer(tsa.url, tsa.trust())
        failures: list[str] = []

        def anchor(checkpoints: list[Any]) -> None:
            failures.extend(o.error for o in anchor_checkpoints(conn, checkpoints, [anchorer]) if o.error)

        def tokens() -> dict[tuple[int, int], int]:
            counts: dict[tuple[int, int], int] = {}
            for p in range(4):
                for a in stored_anchors(conn, settings.topic, p):
                    counts[(p, a.size)] = counts.get((p, a.size), 0) + 1
            return counts

        with rt.connect(autocommit=True) as loop_conn:
            worker = threading.Thread(target=run_checkpointer, args=(
                loop_conn, key, settings.topic, "acme-test", Cadence(1, 3600, 1.0)),
                kwargs={"stop": stop, "anchor": anchor, "poll_seconds": 0.2})
            worker.start()
            try:
                counts = wait_for(tokens, lambda c: len(c) > 0 and all(n >= 3 for n in c.values()))
            finally:
                stop.set()
                worker.join(timeout=30)
        assert not failures
        checkpoints = all_checkpoints(rt)
        # one checkpoint per partition (the tree never grew), stamped again and again
        assert sorted(counts) == sorted((c.partition, c.size) for c in checkpoints)
        for c in checkpoints:
            times = [a.anchored_at for a in stored_anchors(conn, settings.topic, c.partition, c.size)]
            assert times == sorted(times) and len(set(times)) == len(times)
            for a in stored_anchors(conn, settings.topic, c.partition, c.size):
                verify_timestamp(a.token, c.text, tsa.trust(), request_der=a.request)
