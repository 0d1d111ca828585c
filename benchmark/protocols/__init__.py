"""Protocol registry: ``@register_protocol`` classes, looked up by name."""

from __future__ import annotations

from ..registry import Registry
from .base import CLASS_SETS, Fold, Protocol, ProtocolConfig, ProtocolData

PROTOCOLS = Registry("protocol")
register_protocol = PROTOCOLS.register


def get_protocol(name: str, config: ProtocolConfig = ProtocolConfig()) -> Protocol:
    return PROTOCOLS.lookup(name)(config)


PROTOCOLS.discover(__name__, __path__)  # every module joins by its decorator

__all__ = ["CLASS_SETS", "PROTOCOLS", "Fold", "Protocol", "ProtocolConfig", "ProtocolData", "get_protocol"]
