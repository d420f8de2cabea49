"""Source converters and their registry.

``CONVERTERS`` is the one table of the converters this project has: source name -> the
module under ``converters/`` that registers it, in pipeline order. Everything else derives
from it (``SOURCE_NAMES``, ``available_sources``, ``a1pipe samples``). Which datasets a run
converts, from where and with which converter, is the ``sources`` table of ``params.yaml``
(the DVC stages derive from that one). Modules are imported lazily so a missing optional
dependency of one source does not break the others.
"""

from __future__ import annotations

import importlib

from .base import Converter

#: source name -> module that registers its converter, in the order the pipeline lists sources
CONVERTERS: dict[str, str] = {
    "droid": "converters.droid",
    "agibot": "converters.agibot",
    "robocoin": "converters.robocoin",
    "robomind": "converters.robomind",
    "gm100": "converters.gm100",
    "robochallenge": "converters.robochallenge",
    "inhouse": "converters.inhouse",
}

#: every source with a converter, in pipeline order
SOURCE_NAMES = tuple(CONVERTERS)

REGISTRY: dict[str, type[Converter]] = {}


def register(cls: type[Converter]) -> type[Converter]:
    """Class decorator: make a converter available under ``cls.name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"converter name '{cls.name}' registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_converter(name: str) -> type[Converter]:
    if name not in REGISTRY:
        module = CONVERTERS.get(name)
        if module is None:
            known = ", ".join(sorted(CONVERTERS))
            raise KeyError(f"no converter registered for source '{name}' (available: {known})")
        importlib.import_module(module)
    return REGISTRY[name]


def available_sources() -> list[str]:
    """Sources with an implemented converter, in pipeline order."""
    return list(CONVERTERS)


__all__ = ["CONVERTERS", "Converter", "REGISTRY", "SOURCE_NAMES", "available_sources", "get_converter", "register"]
