"""The ``protocolo`` command line.

Each sub-command lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

#: Modules of this package that register a sub-command, in the order ``--help`` lists them.
COMMAND_MODULES = ("demo", "dev", "project", "history", "erase")


class CommandError(Exception):
    """A user-facing failure: printed as ``protocolo: <message>``, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="protocolo",
        description="Event-sourced audit ledger of customer-service interactions.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(f"{__name__}.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    import logging

    # kafka-python logs every refused connection at ERROR while a broker starts; failures
    # that matter reach the user as exceptions with a message that says what to do.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    import psycopg

    from protocolo.config import ConfigError
    from protocolo.consumers.projector import ProjectorError
    from protocolo.producers.publisher import PublishFailed
    from protocolo.runtime import RuntimeUnavailable

    try:
        return int(args.func(args) or 0)
    except (CommandError, ConfigError, RuntimeUnavailable, ProjectorError, PublishFailed) as exc:
        print(f"protocolo: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"protocolo: PostgreSQL failed: {exc}".rstrip(), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `protocolo history ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("protocolo: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
