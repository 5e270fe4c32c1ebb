"""Helper for sub-commands made of actions (``umsynth stats merge``, ``umsynth extractors train``)."""
from __future__ import annotations

import argparse


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
