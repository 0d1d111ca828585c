"""Protocol registry: ``@register_protocol`` classes, looked up by name."""

from __future__ import annotations

from ..errors import BenchError
from .base import CLASS_SETS, Fold, Protocol, ProtocolConfig, ProtocolData

PROTOCOLS: dict[str, type[Protocol]] = {}


def register_protocol(cls: type[Protocol]) -> type[Protocol]:
    PROTOCOLS[cls.name] = cls
    return cls


def get_protocol(name: str, config: ProtocolConfig = ProtocolConfig()) -> Protocol:
    if name not in PROTOCOLS:
        raise BenchError(f"unknown protocol {name!r}; choose one of {', '.join(sorted(PROTOCOLS))}")
    return PROTOCOLS[name](config)


from . import standard  # noqa: E402,F401  (self-registration)

__all__ = ["CLASS_SETS", "PROTOCOLS", "Fold", "Protocol", "ProtocolConfig", "ProtocolData", "get_protocol"]
