"""The ``stylejax`` command.

Each sub-command lives in its own module under ``stylejax/commands/`` and
exposes ``register(subparsers)``, which adds its parser and sets ``func``.
Heavy imports happen inside the command functions so that ``--help`` is fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# Module names under stylejax.commands, in the order --help lists them.
COMMANDS = ("demo", "lap", "phantoms", "tune", "train", "fit_projection",
            "evaluate_stylex", "nst", "dce")


class StylejaxError(Exception):
    """A user-facing error: printed without a traceback, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="stylejax",
        description="Style in medical X-ray images: LAP pipeline, StyleX metric, tuning, NST.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="Run 'stylejax COMMAND --help' for a command's options and an example.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"stylejax.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"stylejax.commands.{name}":
                continue  # command not part of this build
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (StylejaxError, ValueError, FileNotFoundError, OSError) as err:
        print(f"stylejax {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
