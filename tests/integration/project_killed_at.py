"""Test-only entry script: ``protocolo`` with a kill switch in the projector's batch writer.

    python tests/integration/project_killed_at.py <point>[:<n>] <report.json> project ...

Installs :class:`kill_switch.KillSwitch` as the write observer, then runs the command line
exactly as ``protocolo`` would. Not installed with the package: the shipped ``protocolo``
cannot kill itself.
"""

from __future__ import annotations

import sys
from pathlib import Path

from kill_switch import KillSpecError, KillSwitch

from protocolo.cli import main
from protocolo.consumers import write_hooks


def run(argv: list[str]) -> int:
    if len(argv) < 3:
        print("usage: project_killed_at.py <point>[:<n>] <report.json> <protocolo arguments>",
              file=sys.stderr)
        return 2
    try:
        switch = KillSwitch.parse(argv[0], Path(argv[1]))
    except KillSpecError as exc:
        print(f"project_killed_at.py: {exc}", file=sys.stderr)
        return 2
    write_hooks.install(switch)
    return main(argv[2:])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
