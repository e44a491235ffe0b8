"""The bundle's own ``verify.py`` runs with only Python + cryptography and agrees with
``protocolo verify-evidence``.

The script runs in a subprocess with ``-S`` (no site-packages) and a PYTHONPATH that holds
nothing but ``cryptography`` (and its ``cffi``), plus ``rfc3161_client`` when timestamps are
to be checked: the project is not importable there.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import synthetic_bundle as synthetic
from local_tsa import LocalTsa

from protocolo.cli import main as cli_main
from protocolo.evidence.bundle_zip import read_zip, write_zip

DEPENDENCIES = ("cryptography", "cffi", "_cffi_backend", "pycparser")


def _site(tmp: Path, with_rfc3161: bool) -> Path:
    import cryptography

    site_packages = Path(cryptography.__file__).parent.parent
    site = tmp / ("site-full" if with_rfc3161 else "site-bare")
    site.mkdir()
    wanted = DEPENDENCIES + (("rfc3161_client",) if with_rfc3161 else ())
    for entry in site_packages.iterdir():
        if entry.name.split(".")[0] in wanted and not entry.name.endswith(".dist-info"):
            (site / entry.name).symlink_to(entry)
    return site


def run_standalone(bundle: Path, site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    script = bundle.parent / "verify.py"
    script.write_bytes(dict(read_zip(bundle.read_bytes()))["verify.py"])
    env = {"PATH": os.environ.get("PATH", "/usr/bin"), "PYTHONPATH": str(site)}
    return subprocess.run([sys.executable, "-S", str(script), str(bundle), *args], cwd=bundle.parent,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
def tsa(tmp_path_factory: pytest.TempPathFactory) -> LocalTsa:
    with LocalTsa(tmp_path_factory.mktemp("tsa")) as running:
        yield running


def _cli_json(bundle: Path, args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, dict]:
    code = cli_main(["verify-evidence", str(bundle), "--json", *args])
    return code, json.loads(capsys.readouterr().out)


def test_standalone_agrees_with_the_cli(tsa: LocalTsa, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    good = tmp_path / "good.zip"
    good.write_bytes(synthetic.build(tsa.url, tsa.tsa_pem_path.read_bytes() + tsa.root_pem_path.read_bytes()))
    files = dict(read_zip(good.read_bytes()))
    bad = tmp_path / "bad.zip"
    leaf = "records/p0-o4/value.bin"
    files[leaf] = files[leaf][:-1] + bytes([files[leaf][-1] ^ 1])
    bad.write_bytes(write_zip(sorted(files.items())))
    site = _site(tmp_path, with_rfc3161=True)
    args = [a for v in synthetic.pinned().vkeys for a in ("--vkey", v)]
    args += ["--tsa-root", str(tsa.root_pem_path)]
    for bundle, expected_code in ((good, 0), (bad, 1)):
        done = run_standalone(bundle, site, "--json", *args)
        assert done.returncode == expected_code, done.stderr
        code, report = _cli_json(bundle, args, capsys)
        assert code == expected_code
        assert json.loads(done.stdout) == report
    done = run_standalone(bad, site, *args)
    assert "VERDICT: INVALID" in done.stdout and "[file-hash-mismatch]" in done.stdout


def test_standalone_without_rfc3161_client_says_timestamps_were_not_checked(
        tsa: LocalTsa, tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    good.write_bytes(synthetic.build(tsa.url, tsa.tsa_pem_path.read_bytes() + tsa.root_pem_path.read_bytes()))
    done = run_standalone(good, _site(tmp_path, with_rfc3161=False),
                          *[a for v in synthetic.pinned().vkeys for a in ("--vkey", v)])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "timestamps not checked: rfc3161-client missing" in done.stdout
    assert "VERDICT: VALID (4 of 4 records verified)" in done.stdout


def test_standalone_does_not_import_the_project(tmp_path: Path) -> None:
    good = tmp_path / "good.zip"
    good.write_bytes(synthetic.build())
    site = _site(tmp_path, with_rfc3161=False)
    probe = subprocess.run([sys.executable, "-S", "-c", "import protocolo"], env={"PYTHONPATH": str(site)}, cwd=tmp_path,
                           capture_output=True, text=True, check=False)
    assert probe.returncode != 0  # the clean path really lacks the project
    unpinned = run_standalone(good, site)
    assert unpinned.returncode == 3 and "VERDICT: UNPINNED" in unpinned.stdout, unpinned.stderr
    pinned = run_standalone(good, site, *[a for v in synthetic.pinned().vkeys for a in ("--vkey", v)])
    assert pinned.returncode == 0 and "VERDICT: VALID" in pinned.stdout, pinned.stderr
