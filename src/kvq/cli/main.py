"""Entry point of the ``kvq`` console command.

Every sub-command lives in its own module under :mod:`kvq.cli` and exposes
``register(subparsers)``, which adds its parser and sets ``func`` (a callable taking the parsed
namespace and returning an exit status). Modules import heavy dependencies inside ``func`` so
that ``kvq --help`` stays fast.

Every refusal takes one path: a sub-command raises :class:`~kvq.cli.common.CLIError` (or an
:class:`OSError` escapes it), and :func:`main` prints one line, ``kvq <sub-command>: error:
...``, and returns :data:`~kvq.cli.common.EXIT_REFUSED`; argparse's errors look the same.
Ctrl-C ends any sub-command with one line, ``kvq <sub-command>: interrupted``, and
:data:`~kvq.cli.common.EXIT_INTERRUPTED`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from kvq.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_REFUSED,
    ArgumentParser,
    CLIError,
    interruptible,
    messages_on_stderr,
    refuse,
)

# Order is the order shown in ``kvq --help``.
SUBCOMMAND_MODULES: tuple[str, ...] = (
    "info",
    "models",
    "score",
    "annotate",
    "synth",
    "train",
    "eval",
    "lpvq",
)


def build_parser() -> argparse.ArgumentParser:
    from kvq import __version__

    parser = ArgumentParser(
        prog="kvq", description="KVQ video quality assessment: score, train, evaluate, explain."
    )
    parser.add_argument("--version", action="version", version=f"kvq {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMAND_MODULES:
        importlib.import_module(f"kvq.cli.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if not hasattr(args, "func"):
        if unknown:
            parser.error(f"unrecognized arguments: {' '.join(unknown)}")
        parser.print_help()
        return EXIT_REFUSED
    if unknown:  # refused by the sub-command's parser: its usage, not the top-level one
        _subcommand_parser(parser, args.command).error(
            f"unrecognized arguments: {' '.join(unknown)}"
        )
    prog = f"{parser.prog} {args.command}"
    try:
        with interruptible(), messages_on_stderr(prog):
            return int(args.func(args) or 0)
    except (CLIError, OSError) as err:
        return refuse(prog, err)
    except KeyboardInterrupt as err:  # Ctrl-C: one line; a sub-command may say what is kept
        print(f"{prog}: interrupted{': ' + str(err) if str(err) else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED


def _subcommand_parser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    for action in parser._subparsers._group_actions:  # the one sub-parsers action
        return action.choices[name]
    return parser


if __name__ == "__main__":
    sys.exit(main())
