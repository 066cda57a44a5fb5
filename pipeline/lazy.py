"""Packages whose public names load on first use (PEP 562), so importing a light part never loads torch.

``pipeline`` and ``sync`` export many names from submodules; a few of those (the detector, the segmenters) import
torch and transformers, which take seconds. With ``__getattr__ = export_lazily(__name__, {"Name": "submodule"})``
in a package's ``__init__``, ``from pipeline import LabelMap`` imports pipeline/labels.py and nothing else.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


class _LazyPackage(types.ModuleType):
    """A package whose public names win over its submodules of the same name (``pipeline.render`` is a function).

    The import system binds every imported submodule on its package; with eager imports the public name was bound
    after it, so it stays the public name here too."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, types.ModuleType) and name in getattr(self, "__all__", ()):
            return
        super().__setattr__(name, value)


def export_lazily(package: str, sources: Mapping[str, str]) -> Callable[[str], Any]:
    """The module ``__getattr__`` of ``package`` that imports ``sources[name]`` (a submodule) on first access to
    ``name`` and keeps the value; sets the package's ``__all__`` to the names."""
    module = sys.modules[package]
    module.__all__ = sorted(sources)
    module.__class__ = _LazyPackage

    def __getattr__(name: str) -> Any:
        if name not in sources:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{sources[name]}"), name)
        module.__dict__[name] = value
        return value

    return __getattr__
