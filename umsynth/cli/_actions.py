"""What the sub-commands share: the options that mean the same everywhere, and action sub-commands.

The grammar of every command (README "Command line"): inputs are positional; ``--out`` is the
path of the command's main product; ``--device`` is ``auto`` (CUDA when torch can use it,
else the CPU) unless given; ``--save-stats DIR`` saves feature statistics under a folder;
``--no-progress`` hides progress output; ``--from-checkpoint NAME`` picks a run's checkpoint.
"""
from __future__ import annotations

import argparse
import sys

DEVICE_HELP = "auto (default: cuda when torch can use it, else cpu), cpu, cuda or cuda:N"


def add_device(p: argparse.ArgumentParser) -> None:
    """``--device``, default auto (resolve it with :func:`umsynth.runtime.resolve_device`)."""
    p.add_argument("--device", default="auto", help=DEVICE_HELP)


def add_no_progress(p: argparse.ArgumentParser) -> None:
    """``--no-progress``."""
    p.add_argument("--no-progress", action="store_true",
                   help="no progress output (by default a bar in a terminal, a line per 5 %% or minute elsewhere)")


def add_from_checkpoint(p: argparse.ArgumentParser, what: str) -> None:
    """``--from-checkpoint NAME``: which checkpoint of a run folder."""
    p.add_argument("--from-checkpoint", metavar="NAME", default=None,
                   help=f"{what}: last (default), step_0005000 or 5000 (a checkpoint the run kept), "
                        "or a checkpoint file")


def deprecated(command: str, old: str, new: str) -> None:
    """One line on stderr: an old form still works, the new one is preferred."""
    print(f"umsynth {command}: deprecated: {old}; use {new}", file=sys.stderr)


def action_parser(subparsers, command: str, command_help: str, action: str, action_help: str,
                  description: str) -> argparse.ArgumentParser:
    """Add ``command`` with a required action sub-command; return the action's parser.

    Parameters
    ----------
    subparsers : argparse._SubParsersAction
        From the ``umsynth`` parser.
    command, action : str
        Names, e.g. ``"stats"`` and ``"merge"``.
    command_help, action_help : str
        One-line helps.
    description : str
        Shown, unwrapped, by ``--help`` of both.
    """
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(command, help=command_help, description=description, formatter_class=fmt)
    sub = p.add_subparsers(dest="action", metavar="ACTION")
    sub.required = True
    return sub.add_parser(action, help=action_help, description=description, formatter_class=fmt)
