"""Protocol registry: ``@register_protocol`` classes, one per module, discovered by name."""

from __future__ import annotations

from ..registry import Registry
from .base import CLASS_SETS, Fold, Protocol, ProtocolData, requested_classes

PROTOCOLS = Registry("protocol")
register_protocol = PROTOCOLS.register

PROTOCOLS.discover(__name__, __path__)  # every module joins by its decorator

__all__ = ["CLASS_SETS", "PROTOCOLS", "Fold", "Protocol", "ProtocolData", "register_protocol", "requested_classes"]
