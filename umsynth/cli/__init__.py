"""The ``umsynth`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)`` which adds its parser and sets
``func`` to a function taking the parsed namespace and returning an exit code.
"""
from __future__ import annotations

import argparse
import importlib
import sys

from umsynth import __version__
from umsynth.frechet import ConvergenceError

# sub-command name -> module under umsynth.cli that registers it
COMMANDS = {
    "masks": "umsynth.cli.masks",
    "fid": "umsynth.cli.fid",
    "frd": "umsynth.cli.frd",
    "mmfid": "umsynth.cli.mmfid",
    "stats": "umsynth.cli.stats",
    "extractors": "umsynth.cli.extractors",
    "prepare": "umsynth.cli.prepare",
    "train": "umsynth.cli.train",
    "synthesize": "umsynth.cli.synthesize",
    "export-onnx": "umsynth.cli.export_onnx",
    "demo": "umsynth.cli.demo",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="umsynth",
        description="Annotated CT synthesis from unsupervised masks (SemiCS2 method).",
    )
    parser.add_argument("--version", action="version", version=f"umsynth {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for modname in COMMANDS.values():
        importlib.import_module(modname).register(sub)
    _mark_leaves(parser)
    return parser


def _mark_leaves(parser: argparse.ArgumentParser) -> None:
    """Give every innermost sub-command parser a default ``_parser`` naming itself.

    argparse reports an unknown flag with the top-level usage; :func:`main` uses this to
    report it with the sub-command's own usage instead.
    """
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        parser.set_defaults(_parser=parser)
    for action in subs:
        for child in set(action.choices.values()):
            _mark_leaves(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the sub-command's usage, not the top-level one (exits with status 2)
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileNotFoundError, OSError) as exc:
        # one clear line, no traceback, for bad input
        print(f"umsynth {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ConvergenceError as exc:
        # a Fréchet iteration that could not certify its result: say so, never a wrong number
        print(f"umsynth {args.command}: error: {exc}", file=sys.stderr)
        return 3


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
