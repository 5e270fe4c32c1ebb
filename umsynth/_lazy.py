"""Lazy package exports, and the optional dependencies they may need.

Lets ``import umsynth.data`` or ``umsynth.train`` stay light (no torch, no nibabel) until a
name that needs them is asked for. When that name needs an optional dependency that is not
installed, the error says which extra to install (:func:`missing_extra`).
"""
from __future__ import annotations

import importlib

# optional top-level modules -> the umsynth extra that installs them (None: not an extra)
OPTIONAL = {"torch": "torch", "torchvision": None, "tensorboard": "logging", "onnx": "onnx",
            "onnxruntime": "onnx", "pydicom": "dicom"}


class MissingDependencyError(ModuleNotFoundError):
    """An optional dependency that a feature needs is not installed (the message says how to get it)."""


def missing_extra(exc: ImportError) -> str | None:
    """One line saying what to install, for an ImportError of an optional dependency; else None."""
    top = (getattr(exc, "name", None) or "").split(".")[0]
    if isinstance(exc, MissingDependencyError):
        return str(exc)
    if not isinstance(exc, ModuleNotFoundError) or top not in OPTIONAL:
        return None
    extra = OPTIONAL[top]
    how = f'pip install "umsynth[{extra}]"' if extra else f"pip install {top}"
    return f"this needs {top}, which is not installed: {how}"


def lazy_exports(package: str, namespace: dict, exports: dict[str, str]):
    """Return ``(__getattr__, __dir__)`` for `package` whose ``exports`` map name -> submodule."""

    def __getattr__(name: str):
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        try:
            value = getattr(importlib.import_module(f"{package}.{module}"), name)
        except ModuleNotFoundError as exc:
            hint = missing_extra(exc)
            if hint is None:
                raise
            raise MissingDependencyError(f"{package}.{name}: {hint}", name=exc.name) from exc
        namespace[name] = value  # cache: later look-ups skip this function
        return value

    def __dir__():
        return sorted(set(namespace) | set(exports))

    return __getattr__, __dir__
