"""Lazy re-exports for a package face whose modules import heavy libraries (BentoML, boto3 …).

``__getattr__ = lazy_exports(__name__, {"Name": ".module", …})`` makes ``package.Name`` import
``package.module`` on first use (PEP 562), so importing one light module of the package does not
pay for the others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

__all__ = ["lazy_exports"]


def lazy_exports(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package`` that resolves each of ``names`` (public name →
    relative module) on first access and caches it in the package's namespace."""
    table = dict(names)

    def __getattr__(name: str) -> Any:
        module = table.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        setattr(importlib.import_module(package), name, value)
        return value

    return __getattr__
