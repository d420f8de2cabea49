"""Curation hook of the conversion pipeline: sits between reading and writing each episode.

Until the curation issue lands this is the identity. The contract is fixed now so
converters and the pipeline do not change when filters arrive: a curation step
takes an :class:`Episode` and returns the (possibly trimmed) episode plus a list
of removals, each with a reason code, so nothing disappears silently.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pipelines.episode_store.record import Episode


@dataclass
class CurationResult:
    episode: Episode
    #: one entry per removed frame range: {"start", "stop", "reason", "message"}
    removed: list[dict[str, Any]] = field(default_factory=list)


class Curation:
    """Identity curation: keeps every frame. Configured from ``params.yaml`` (``curation:``)."""

    name = "identity"

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = dict(params or {})

    def __call__(self, episode: Episode) -> CurationResult:
        return CurationResult(episode=episode)


def build_curation(params: dict[str, Any] | None = None) -> Curation:
    return Curation(params)
