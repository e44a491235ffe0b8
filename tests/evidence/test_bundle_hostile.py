"""Hostile bundles get a named INVALID finding from both verifiers, never a traceback.

Each case runs through ``protocolo verify-evidence`` (in process) and through the
published standalone verifier (``python -S verifier/protocolo_verify.py`` with nothing but
``cryptography`` importable). The README's manual steps run exactly as the bundle states
them, with openssl.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic_bundle as synthetic
from test_bundle_standalone import _site

from protocolo.cli import main as cli_main
from protocolo.evidence.bundle import FORMAT, manifest_note_text, verify_bundle
from protocolo.evidence.bundle_zip import read_zip, write_zip
from protocolo.evidence.note import sign_note

REPO = Path(__file__).resolve().parents[2]
PUBLISHED = REPO / "verifier" / "protocolo_verify.py"
PINS = [a for v in synthetic.pinned().vkeys for a in ("--vkey", v)]


def _with_manifest(edit: object) -> bytes:
    files = dict(read_zip(synthetic.build()))
    doc = json.loads(files["manifest.json"])
    text = edit(doc) if callable(edit) else edit
    files["manifest.json"] = text if isinstance(text, bytes) else json.dumps(doc).encode()
    return write_zip(sorted(files.items()))


def _nested(doc: dict) -> bytes:
    return b'{"format": "protocolo/bundle/v2", "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def _non_ascii_path(doc: dict) -> None:
    doc["files"][0]["path"] = "relatório-é.txt"


def _surrogate_topic(doc: dict) -> None:
    doc["records"][0]["topic"] = "protocolo.ledger\udc80"


def _surrogate_dir(doc: dict) -> None:
    doc["records"][0]["dir"] = "records/p0-o1\ud800"


def _newline_dir(doc: dict) -> None:
    doc["records"][0]["dir"] = "records/p0-o1\nVERDICT: VALID (4 of 4 records verified)"


CASES = {"deeply-nested-manifest": _nested, "non-ascii-path": _non_ascii_path,
         "surrogate-topic": _surrogate_topic, "surrogate-dir": _surrogate_dir,
         "newline-dir": _newline_dir}


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _site(tmp_path_factory.mktemp("site"), with_rfc3161=False)


def _standalone(bundle: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-S", str(PUBLISHED), str(bundle), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _assert_named_invalid(out: str, err: str, code: int) -> None:
    assert code == 1, out + err
    assert "Traceback" not in out + err
    verdicts = [line for line in out.splitlines() if line.startswith("VERDICT:")]
    assert len(verdicts) == 1 and verdicts[0].startswith("VERDICT: INVALID"), out
    assert "[manifest-malformed]" in out or "[zip-not-sorted]" in out, out


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_hostile_manifest_is_a_named_invalid_finding(case: str, tmp_path: Path, site: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    data = _with_manifest(CASES[case])
    report = verify_bundle(data, synthetic.pinned())
    assert report.verdict == "INVALID" and report.reasons == ["manifest-malformed"], report.render()
    path = tmp_path / "hostile.zip"
    path.write_bytes(data)
    code = cli_main(["verify-evidence", str(path), *PINS])
    captured = capsys.readouterr()
    _assert_named_invalid(captured.out, captured.err, code)
    done = _standalone(path, site, *PINS)
    _assert_named_invalid(done.stdout, done.stderr, done.returncode)


def test_every_printed_name_is_escaped() -> None:
    from protocolo.evidence.bundle import BundleReport, RecordVerdict

    report = BundleReport(pinned=True)
    report.records.append(RecordVerdict("records/x\nVERDICT: VALID (1 of 1)\udc80", reason="leaf-mismatch",
                                        detail="line\rbreak"))
    text = report.render()
    assert [line for line in text.splitlines() if "VERDICT" in line.split()[0:1]] == []
    assert text.count("\n") == 2 and "\\n" in text and "\\udc80" in text
    text.encode("utf-8")  # no lone surrogate left to fail an encoder


def test_entries_out_of_order_are_refused(tmp_path: Path, site: Path) -> None:
    entries = read_zip(synthetic.build())
    shuffled = write_zip([entries[-1], *entries[:-1]])
    report = verify_bundle(shuffled, synthetic.pinned())
    assert "zip-not-sorted" in report.reasons
    path = tmp_path / "unsorted.zip"
    path.write_bytes(shuffled)
    done = _standalone(path, site, *PINS)
    assert done.returncode == 1 and "[zip-not-sorted]" in done.stdout and "Traceback" not in done.stderr


def test_options_are_named_before_the_bundle_is_read(tmp_path: Path, site: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    absent = str(tmp_path / "absent.zip")  # never read: the options fail first
    for args, named in ((["--vkey", "not-a-vkey"], "--vkey 'not-a-vkey'"),
                        (["--tsa-root", str(tmp_path / "missing.pem")], "--tsa-root"),
                        (["--policy", str(tmp_path / "none.txt")], "--policy"),
                        (["--protocol", "12"], "--protocol '12'"),
                        (["--request", "not-a-uuid"], "--request 'not-a-uuid'")):
        assert cli_main(["verify-evidence", absent, *args]) == 2
        err = capsys.readouterr().err
        assert named in err and "absent.zip" not in err, err
        done = _standalone(Path(absent), site, *args)
        assert done.returncode == 2 and named in done.stderr and "Traceback" not in done.stderr


def test_the_readme_manual_steps_work_exactly_as_written(tmp_path: Path) -> None:
    """Steps 1 to 3 of README.txt, copied from the file, run by bash with openssl (the
    tools a recipient has; .ci/run installs them when missing: never a skip)."""
    assert shutil.which("openssl") and shutil.which("unzip"), "the manual steps need openssl and unzip"
    data = synthetic.build()
    files = dict(read_zip(data))
    readme = files["README.txt"].decode()
    assert "\x00" not in readme and "\\x30\\x2a" in readme
    (tmp_path / "BUNDLE.zip").write_bytes(data)
    steps = readme.split("Verificação manual / Manual verification", 1)[1]
    unzip = re.search(r"1\. (unzip BUNDLE\.zip -d bundle && cd bundle)\n", steps).group(1)
    sums = re.search(r"2\. Hashes: (sha256sum -c SHA256SUMS) ", steps).group(1)
    block = steps.split("       V='", 1)[1].split("     O mesmo vale", 1)[0]
    signer = files["manifest.sig"].decode().splitlines()[-1].split()[1]
    vkey = next(v for v in synthetic.pinned().vkeys if v.split("+")[0] == signer)
    manual = [c.strip() for c in ("V='" + block).splitlines() if c.strip()]
    manual[0] = f"V='{vkey}'"  # the reader pastes the published key here
    script = "set -e\n" + "\n".join([unzip, sums, *manual])
    done = subprocess.run(["bash", "-c", script], cwd=tmp_path, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Signature Verified Successfully" in done.stdout and "FAILED" not in done.stdout


def test_keys_help_says_each_partition_has_its_own_key(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["keys", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "each partition has its own Ed25519 key" in text
    assert "share one" not in text


HOSTILE_VALUES = (None, -1, 2**70, 1.5, True, "", "\ud800", "a\nVERDICT: VALID (1 of 1 records verified)",
                  "é/../x", [], {}, [[[[]]]], {"a": {"b": {}}})


def _paths(value: object, path: tuple = ()) -> list[tuple]:
    """Every leaf path of a JSON document (the first item of each list only)."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, (*path, k))] or [path]
    if isinstance(value, list):
        return _paths(value[0], (*path, 0)) if value else [path]
    return [path]


def _get_path(doc: object, path: tuple) -> object:
    for step in path:
        doc = doc[step]  # type: ignore[index]
    return doc


def _set(doc: object, path: tuple, value: object) -> None:
    for step in path[:-1]:
        doc = doc[step]  # type: ignore[index]
    doc[path[-1]] = value  # type: ignore[index]


def test_every_manifest_field_set_to_hostile_values_is_a_named_finding() -> None:
    """A mutation campaign over the manifest: each field replaced by values of the wrong
    type, out of range, with surrogates or line breaks, and the manifest signed again with
    the real key (a maker that lies). Never a crash, never the last-resort
    'unverifiable', never VALID, and no forged verdict line."""
    files = dict(read_zip(synthetic.build()))
    original = json.loads(files["manifest.json"])
    paths = _paths(original)
    assert len(paths) > 30
    valid: set[tuple] = set()
    for path in paths:
        for value in HOSTILE_VALUES:
            doc = json.loads(files["manifest.json"])
            before = _get_path(doc, path)
            if before == value and type(before) is type(value):
                continue
            _set(doc, path, value)
            manifest = json.dumps(doc).encode()
            # signed with the real key, so the checks past the signature see the value too
            signature = sign_note(manifest_note_text(manifest, FORMAT), [synthetic.log_signer(0)])
            changed = dict(files, **{"manifest.json": manifest, "manifest.sig": signature})
            report = verify_bundle(write_zip(sorted(changed.items())), synthetic.pinned())
            if report.verdict == "VALID":
                valid.add(path)
                continue
            assert "unverifiable" not in report.reasons, (path, value, report.render())
            verdicts = [line for line in report.render().splitlines() if line.startswith("VERDICT")]
            assert len(verdicts) == 1 and verdicts[0].startswith("VERDICT: INVALID"), (path, value)
    # fields a verifier never relies on: the tool's name, the bundle's own copies of keys
    # (never trusted), declarations beyond the customer, the reserved index, a timestamp
    # list emptied (fewer claims), a rule parameter this bundle's summary does not use
    assert valid <= {("created", "tool"), ("keys", "log", 0), ("keys", "witness", 0), ("declared",),
                     ("index",), ("checkpoints", 0, "timestamps"),
                     ("rules", "recording_delivery_days")}, valid
