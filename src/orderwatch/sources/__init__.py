"""Source adapters: one small, pure module per API format, each exporting its ``Adapter``.

An adapter builds requests and parses answers; it never performs I/O. To add a format, write a module that builds
an ``Adapter`` and add one line to ``ADAPTERS``. Everything outside this package asks the adapter (``adapter_for``)
about the format: its states, filters, creation times and how an order reads to people.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any, Final

from orderwatch.core.secret import Secret
from orderwatch.sources import acedata, lsky
from orderwatch.sources import json as json_api
from orderwatch.sources.presets import PRESETS
from orderwatch.sources.spec import Adapter, JsonApi, JsonFilters, JsonPaging, Part, Partition, Request, Skip, Source

ADAPTERS: Final[Mapping[str, Adapter]] = {"acedata": acedata.ADAPTER, "lsky": lsky.ADAPTER}
JSON_KIND: Final = "json"  # any JSON orders API, described by its config (``Source.api``)
KINDS: Final = (*ADAPTERS, JSON_KIND)


def adapter_for(src: Source) -> Adapter:
    """The adapter of ``src``'s format (for kind "json", the one its ``api`` describes)."""
    if src.api is not None:
        return json_api.adapter(src.api)
    return ADAPTERS[src.kind]


def make_source(name: str, kind: str, base_url: str, **settings: Any) -> Source:
    """A ``Source`` as the config would build it: the adapter's default states merged under ``states`` (keys
    case-folded) and its open states unless ``open_states`` is given. ``KeyError`` for an unknown ``kind``."""
    if kind == JSON_KIND:
        if not isinstance(settings.get("api"), JsonApi):
            raise KeyError("kind json needs api=JsonApi(...)")
        adapter = json_api.adapter(settings["api"])
    else:
        adapter = ADAPTERS[kind]
    if isinstance(settings.get("token"), str):
        settings["token"] = Secret(settings["token"])
    states = {**adapter.default_states, **{k.casefold(): v for k, v in dict(settings.pop("states", {})).items()}}
    src = Source(name=name, kind=kind, base_url=base_url.rstrip("/"), states=states, **settings)
    return src if src.open_states else replace(src, open_states=adapter.open_states)


__all__ = [
    "ADAPTERS",
    "JSON_KIND",
    "KINDS",
    "PRESETS",
    "Adapter",
    "JsonApi",
    "JsonFilters",
    "JsonPaging",
    "Part",
    "Partition",
    "Request",
    "Skip",
    "Source",
    "adapter_for",
    "make_source",
]
