"""The ``protocolo`` command line.

Each sub-command lives in its own module in this package and exposes
``register(subparsers)``, which adds its parser and sets ``func`` to a callable taking the
parsed arguments and returning the process exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable

#: Modules of this package that register a sub-command, in the order ``--help`` lists them.
COMMAND_MODULES = ("demo", "dev", "project", "history", "erase", "protocol", "topic", "checkpoint",
                   "keys", "witness", "verify", "evidence", "verify_evidence", "export", "verify_export", "report", "restore_topic",
                   "serve", "user")


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


def bounded_int(low: int, high: int) -> Callable[[str], int]:
    """An argparse ``type`` for a whole number in ``[low, high]`` that says the range."""

    def parse(text: str) -> int:
        try:
            value = int(text, 10)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is out of range: must be from {low:,} to {high:,}")
        return value

    return parse


#: Exit status of a read command that found no ledger to read (LSB "program is not running").
EXIT_UNREACHABLE = 3
#: Exit status of a failure nobody foresaw (sysexits EX_SOFTWARE); the message says what to report.
EXIT_INTERNAL = 70


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error argparse has already printed
        return exc.code if isinstance(exc.code, int) else 2
    import logging
    import os

    # kafka-python logs every refused connection at ERROR while a broker starts; failures
    # that matter reach the user as exceptions with a message that says what to do.
    logging.getLogger("kafka").setLevel(logging.CRITICAL)
    import psycopg
    from kafka.errors import KafkaError

    from protocolo.consumers.projector import ProjectorError
    from protocolo.core.config import ConfigError
    from protocolo.core.database import MigrationEdited, SchemaMissing
    from protocolo.core.deployment_keys import KeyConfigError
    from protocolo.core.policy import PolicyError
    from protocolo.core.topic_settings import TopicSettingsError
    from protocolo.core.watermark import ProjectionBehind
    from protocolo.producers.publisher import PublishFailed
    from protocolo.runtime import LedgerUnreachable, RuntimeUnavailable

    try:
        return int(args.func(args) or 0)
    except LedgerUnreachable as exc:
        print(f"protocolo: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE
    except (CommandError, ConfigError, RuntimeUnavailable, ProjectorError, PublishFailed, PolicyError,
            KeyConfigError, SchemaMissing, MigrationEdited, ProjectionBehind, TopicSettingsError) as exc:
        print(f"protocolo: {exc}", file=sys.stderr)
        return 2
    except psycopg.Error as exc:
        print(f"protocolo: PostgreSQL failed: {exc}".rstrip(), file=sys.stderr)
        return 2
    except KafkaError as exc:
        print(f"protocolo: Kafka failed: {type(exc).__name__}: {exc}".rstrip(), file=sys.stderr)
        return 2
    except BrokenPipeError:  # `protocolo history ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("protocolo: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - no traceback reaches a user
        if os.environ.get("PROTOCOLO_DEBUG"):
            raise
        print(f"protocolo: internal error ({type(exc).__name__}: {exc}); this is a bug: "
              "run again with PROTOCOLO_DEBUG=1 for the traceback and report it", file=sys.stderr)
        return EXIT_INTERNAL


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
