"""The ``umsynth`` command line: one sub-command per module in this package.

Each sub-command module defines ``register(subparsers)`` which adds its parser and sets
``func`` to a function taking the parsed namespace and returning an exit code. A command
that writes an output folder calls :func:`hold_output` first.

Errors end in one line on stderr, never a traceback (``UMSYNTH_DEBUG=1`` shows it):
exit status 2 for bad input (arguments, files, a missing optional dependency, an output
in use), 3 for a Fréchet iteration that could not certify its result, 1 for anything
unexpected (a bug: please report it with the traceback), 130 when interrupted.
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import os
import sys

from umsynth import __version__
from umsynth._lazy import missing_extra
from umsynth.files import output_lock, short_reason
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

# output locks held by the running command, released when it ends
_held = contextlib.ExitStack()


def hold_output(path, command: str, *, file: bool = False) -> None:
    """Lock an output folder (or file) until the running command ends.

    Another umsynth process writing the same output stops with one line instead of
    overwriting it (:func:`umsynth.files.output_lock`, which also removes temporary files
    that killed runs left there). Under ``torchrun`` only rank 0 takes the lock: the other
    ranks write nothing of their own there.
    """
    if os.environ.get("RANK", "0") not in ("", "0"):
        return
    _held.enter_context(output_lock(path, command, file=file))


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


def _error_line(exc: BaseException) -> tuple[str, int] | None:
    """(one-line message, exit status) for an error a user can act on; None for a bug."""
    if isinstance(exc, ImportError):
        hint = missing_extra(exc)
        return (hint, 2) if hint else None
    if isinstance(exc, ConvergenceError):
        # a Fréchet iteration that could not certify its result: say so, never a wrong number
        return str(exc), 3
    if isinstance(exc, (ValueError, TypeError, OSError)):
        return str(exc) or short_reason(exc), 2
    if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":  # torch's CUDA one
        return "out of memory (" + (str(exc) or "MemoryError") + "); try a smaller batch or input", 2
    return None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # the sub-command's usage, not the top-level one (exits with status 2)
        getattr(args, "_parser", parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    name = f"umsynth {args.command}"
    try:
        with _held:
            return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if os.environ.get("UMSYNTH_DEBUG"):
            raise
        known = _error_line(exc)
        if known is not None:
            # one clear line, no traceback, for bad input
            msg, status = known
            print(f"{name}: error: " + "; ".join(s.strip() for s in msg.splitlines() if s.strip()), file=sys.stderr)
            return status
        print(f"{name}: internal error: {short_reason(exc)} (a bug: please report it with the traceback "
              "that UMSYNTH_DEBUG=1 shows)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
