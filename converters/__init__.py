"""Source converters and their registry.

``REGISTRY`` maps a source name (``droid``, ``agibot``, ``robocoin``, ``robomind``,
``gm100``, ``robochallenge``, ``inhouse``) to its converter class. Modules listed in
``CONVERTER_MODULES`` are imported lazily so a missing optional dependency of one
source does not break the others.
"""

from __future__ import annotations

import importlib

from .base import Converter

#: every source the paper trains on, in the order the pipeline lists them
SOURCE_NAMES = ("droid", "agibot", "robocoin", "robomind", "gm100", "robochallenge", "inhouse")

#: source name -> module under ``converters/`` that registers it
CONVERTER_MODULES = {
    "droid": "converters.droid",
    "agibot": "converters.agibot",
    "robocoin": "converters.robocoin",
    "robomind": "converters.robomind",
    "gm100": "converters.gm100",
    "robochallenge": "converters.robochallenge",
    "inhouse": "converters.inhouse",
}

REGISTRY: dict[str, type[Converter]] = {}


def register(cls: type[Converter]) -> type[Converter]:
    """Class decorator: make a converter available under ``cls.name``."""
    if cls.name in REGISTRY and REGISTRY[cls.name] is not cls:
        raise ValueError(f"converter name '{cls.name}' registered twice")
    REGISTRY[cls.name] = cls
    return cls


def get_converter(name: str) -> type[Converter]:
    if name not in REGISTRY:
        module = CONVERTER_MODULES.get(name)
        if module is None:
            known = ", ".join(sorted(CONVERTER_MODULES))
            raise KeyError(f"no converter registered for source '{name}' (available: {known})")
        importlib.import_module(module)
    return REGISTRY[name]


def available_sources() -> list[str]:
    """Sources with an implemented converter, in pipeline order."""
    return [name for name in SOURCE_NAMES if name in CONVERTER_MODULES]


__all__ = ["Converter", "REGISTRY", "SOURCE_NAMES", "available_sources", "get_converter", "register"]
