"""The verifier a recipient runs is published in the repository, not shipped by the bundle's
maker: ``verifier/protocolo_verify.py`` is exactly what the generator makes from
``protocolo.evidence``, its SHA-256 is the one README.md and docs/evidence-format.md state,
and a bundle's ``verify.py`` copy is byte-identical (so the README's hash check passes)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import synthetic_bundle as synthetic

from protocolo.attestation.standalone_verifier import PUBLISHED_PATH, standalone_verifier
from protocolo.evidence.bundle_zip import read_zip

REPO = Path(__file__).resolve().parents[2]
REGENERATE = ("python -c 'from protocolo.attestation.standalone_verifier import *; "
              "open(PUBLISHED_PATH, \"wb\").write(standalone_verifier())'")


def _published() -> bytes:
    return (REPO / PUBLISHED_PATH).read_bytes()


def test_the_published_verifier_is_what_the_generator_makes() -> None:
    assert _published() == standalone_verifier(), f"regenerate it: {REGENERATE}, then update the hashes"


def test_readme_and_format_document_state_its_sha256() -> None:
    digest = hashlib.sha256(_published()).hexdigest()
    for doc in ("README.md", "docs/evidence-format.md"):
        text = (REPO / doc).read_text()
        stated = set(re.findall(r"protocolo_verify\.py[^\n]*?\b([0-9a-f]{64})\b|\b([0-9a-f]{64})\b[^\n]*?protocolo_verify\.py", text))
        hashes = {h for pair in stated for h in pair if h}
        assert hashes == {digest}, (doc, hashes, digest)


def test_a_bundle_carries_the_same_bytes_and_tells_to_compare_the_hash() -> None:
    files = dict(read_zip(synthetic.build()))
    assert files["verify.py"] == _published()
    readme = files["README.txt"].decode()
    assert hashlib.sha256(_published()).hexdigest() in readme
    assert "verifier/protocolo_verify.py" in readme and "sha256sum verify.py" in readme
