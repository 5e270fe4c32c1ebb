"""Lazy package exports: a name is imported from its submodule on first use.

Lets ``import umsynth.data`` or ``umsynth.train`` stay light (no torch, no nibabel) until a
name that needs them is asked for.
"""
from __future__ import annotations

import importlib


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]):
    """Return ``(__getattr__, __dir__)`` for `package` whose ``exports`` map name -> submodule."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value  # cache: later look-ups skip this function
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
