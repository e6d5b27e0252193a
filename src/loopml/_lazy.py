"""Package attributes loaded on first use (PEP 562), so that importing a package's pure parts
(the drift statistics, the expression language, the bandit policies) does not load storage,
SQLAlchemy, DuckDB or FastAPI.

>>> import sys, types
>>> pkg = types.ModuleType("pkg")
>>> pkg.__getattr__ = lazy_attributes("pkg", {"sqrt": "math"})
>>> pkg.sqrt(4.0)
2.0
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, names: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` resolving ``names`` on first use and keeping the value on the
    package, so the next access costs nothing. Each name maps to the module that defines it, or
    to ``"module:"`` when the name is that module itself."""

    def __getattr__(name: str) -> Any:
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        path, colon, _ = module.partition(":")
        imported = importlib.import_module(path)
        value = imported if colon else getattr(imported, name)
        owner = sys.modules.get(package)
        if owner is not None:
            setattr(owner, name, value)
        return value

    return __getattr__
