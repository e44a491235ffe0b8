"""The repository stands alone: nothing in it reads, or sends readers to, a folder outside it.

A clean clone on a machine that never saw the team's design notebook must collect and pass
its tests and find its design in ``docs/``. Any path that climbs out of the repository into
a sibling ``shared`` folder is a dependency a clone would not have.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

# Spelled in pieces so this file does not match itself.
OUTSIDE = re.compile(r"\.\./" + "shared" + r"|\b" + "shared" + r"/(evidence-vectors|[A-Z]+\.md)")


def _tracked_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True)
    return [REPO / name for name in listed.stdout.decode().split("\0") if name]


def test_no_file_reads_or_cites_a_folder_outside_the_repository() -> None:
    found = []
    for path in _tracked_files():
        if not path.is_file():
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary vectors (tokens, DER)
        for number, line in enumerate(text.splitlines(), 1):
            if OUTSIDE.search(line):
                found.append(f"{path.relative_to(REPO)}:{number}: {line.strip()}")
    assert found == [], "\n".join(found)


def test_the_design_and_the_vectors_are_in_the_repository() -> None:
    for doc in ("docs/design.md", "docs/domain.md", "docs/evidence-design.md", "docs/architecture.md"):
        assert (REPO / doc).is_file(), doc
    readme = (REPO / "tests/evidence/vectors/README.md").read_text(encoding="utf-8")
    assert "## Licences" in readme
    for licence in ("Apache-2.0", "BSD-3-Clause", "CC BY 4.0"):
        assert licence in readme
    # the docs the README and CONTRIBUTING send readers to exist
    for guide in ("README.md", "CONTRIBUTING.md"):
        for cited in re.findall(r"`(docs/[\w./-]+\.md)`", (REPO / guide).read_text(encoding="utf-8")):
            assert (REPO / cited).is_file(), f"{guide} cites {cited}"


NARRATION = re.compile(r"\b[Ii]ssue \d+\b|bench/faults found")


def test_code_and_guides_say_why_not_which_issue() -> None:
    """History ("issue 7", "bench/faults found it") belongs in commits; code says why."""
    found = []
    for path in _tracked_files():
        name = str(path.relative_to(REPO))
        if path.suffix not in (".py", ".toml", ".md"):
            continue
        if name == "tests/test_stands_alone.py" or name.startswith("tests/evidence/vectors/"):
            continue
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if NARRATION.search(line):
                found.append(f"{name}:{number}: {line.strip()}")
    assert found == [], "\n".join(found)
