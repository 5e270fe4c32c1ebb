"""Every command line in README.md's ```bash blocks runs as printed.

Each ``umsynth ...`` line (also after ``torchrun ... --no-python``) is parsed by the real
``umsynth`` parser with value types and choices switched off (README lines hold
placeholders such as ``DIR`` and ``cpu|cuda``): every flag must exist with the arity shown,
and the positionals must fit. Then the sub-command's ``--help`` runs. ``bash .ci/X`` lines
must name an existing script.
"""
from __future__ import annotations

import argparse
import re
import shlex
from pathlib import Path

import pytest

from umsynth.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def bash_lines(text: str) -> list[tuple[int, str]]:
    """(line number, command) of every command in the ```bash blocks, continuations joined."""
    out, block, pending, start = [], False, "", 0
    for no, line in enumerate(text.splitlines(), 1):
        if line.strip().startswith("```"):
            block = line.strip() == "```bash"
            continue
        if not block:
            continue
        if not pending:
            start = no
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        cmd = pending.split(" #", 1)[0].strip()
        pending = ""
        if cmd:
            out.append((start, cmd))
    return out


COMMANDS = bash_lines(README.read_text(encoding="utf-8"))


def umsynth_argv(cmd: str) -> list[str] | None:
    """The arguments after ``umsynth`` in a README line (synopsis brackets and ``...`` removed)."""
    words = shlex.split(cmd.replace("[", " ").replace("]", " "))
    if "umsynth" not in words:
        return None
    return [w for w in words[words.index("umsynth") + 1:] if w not in ("...", "…")]


def _loose(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The same parser with every value accepted as text (placeholders parse)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in set(action.choices.values()):
                _loose(child)
        else:
            action.type, action.choices = None, None
    return parser


def _subcommand(argv: list[str]) -> list[str]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    child = sub.choices[argv[0]]
    inner = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
    return argv[:2] if inner else argv[:1]


def test_readme_has_commands():
    assert sum(umsynth_argv(c) is not None for _, c in COMMANDS) >= 10


@pytest.mark.parametrize("lineno, cmd", COMMANDS, ids=[f"README:{n}" for n, _ in COMMANDS])
def test_readme_command_parses_and_has_help(lineno, cmd, capsys):
    if cmd.startswith("bash "):
        script = shlex.split(cmd)[1]
        assert (ROOT / script).is_file(), f"README.md:{lineno}: {script} does not exist"
        return
    argv = umsynth_argv(cmd)
    assert argv is not None, f"README.md:{lineno}: not an umsynth command: {cmd}"
    parser = _loose(build_parser())
    try:
        args, unknown = parser.parse_known_args(argv)
    except SystemExit:
        pytest.fail(f"README.md:{lineno}: `{cmd}` does not parse: {capsys.readouterr().err.strip()}")
    assert not unknown, f"README.md:{lineno}: `{cmd}`: unknown arguments {unknown}"
    old = {"prepare": lambda a: a.old_out is not None, "stats": lambda a: a.out is None}.get(argv[0])
    assert not (old and old(args)), f"README.md:{lineno}: `{cmd}` uses the deprecated positional OUT: use --out"
    with pytest.raises(SystemExit) as exc:
        main([*_subcommand(argv), "--help"])
    assert exc.value.code == 0
    assert "usage: umsynth " + " ".join(_subcommand(argv)) in capsys.readouterr().out


def test_quick_demo_time_agrees():
    """``umsynth demo --help`` and the README give the same time for ``--quick``."""
    from umsynth.cli.demo import QUICK_TIME

    text = README.read_text(encoding="utf-8")
    lines = [ln for ln in text.splitlines() if "--quick" in ln and re.search(r"\d", ln)]
    assert lines and all(QUICK_TIME in ln for ln in lines if re.search(r"\bs\b|second|minute|min\b", ln)), (
        f"README lines about --quick's time must say {QUICK_TIME!r}: {lines}")


def test_every_subcommand_reports_its_own_usage(capsys):
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, child in sub.choices.items():
        inner = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        words = [name, *([next(iter(inner[0].choices))] if inner else [])]
        with pytest.raises(SystemExit) as exc:
            main([*words, "--no-such-flag"])
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert f"usage: umsynth {' '.join(words)}" in err, err
        # (a missing required argument may be reported first: still with this usage)
        assert f"umsynth {' '.join(words)}: error: " in err, err
    with pytest.raises(SystemExit):
        main(["fid", "a", "b", "--no-such-flag"])
    err = capsys.readouterr().err
    assert err.startswith("usage: umsynth fid ") and "umsynth fid: error: unrecognized arguments: --no-such-flag" in err


def test_one_grammar():
    """--device defaults to auto, --no-progress and --out exist, wherever they apply."""
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    leaves = {}
    for name, child in sub.choices.items():
        inner = [a for a in child._actions if isinstance(a, argparse._SubParsersAction)]
        for action_name, leaf in (inner[0].choices.items() if inner else [("", child)]):
            leaves[f"{name} {action_name}".strip()] = leaf
    for name, leaf in leaves.items():
        opts = {o: a for a in leaf._actions for o in a.option_strings}
        if "--device" in opts:
            assert opts["--device"].default == "auto", name
        if name not in ("fid", "frd"):  # they print a number; --save-stats DIR writes their statistics
            assert "--out" in opts, name
        if "--save-stats" in opts:
            assert opts["--save-stats"].metavar == "DIR", name
    for name in ("fid", "mmfid", "demo", "train", "synthesize"):
        assert "--no-progress" in {o for a in leaves[name]._actions for o in a.option_strings}, name
