"""Source adapters: one small, pure module per API format. ``ADAPTERS`` maps a config ``kind`` to its module.

An adapter builds requests and parses answers; it never performs I/O. To add a format, write a module with the
functions of ``Adapter`` and add one line to ``ADAPTERS``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final, Protocol

from orderwatch.sources import acedata, lsky
from orderwatch.sources._types import Request, Skip

if TYPE_CHECKING:
    from orderwatch.config import SourceConfig
    from orderwatch.core.model import Order, Page


class Adapter(Protocol):
    """What every source module provides. ``cursor`` is the adapter's own paging position (offset or page)."""

    @property
    def RAW_STATES(self) -> tuple[str, ...]: ...  # the states as the API spells them (for its filters)
    @property
    def DEFAULT_STATES(self) -> Mapping[str, str]: ...  # raw state (case-folded) → canonical state
    @property
    def OPEN_STATES(self) -> tuple[str, ...]: ...  # canonical states an order can still leave (incremental polls)
    @property
    def KEY_FIELD(self) -> str: ...
    @property
    def STATE_FIELD(self) -> str: ...

    def list_request(
        self, src: SourceConfig, cursor: int, *, page_size: int | None = None, states: Sequence[str] = ()
    ) -> Request: ...

    def first_cursor(self) -> int: ...

    def plan(self, first: Page, cursor: int) -> list[int]: ...

    def next_cursor(self, cursor: int, page: Page, page_size: int) -> int | None: ...

    def parse_list(self, src: SourceConfig, body: bytes, *, skip: Skip | None = None) -> Page: ...

    def detail_request(self, src: SourceConfig, key: str) -> Request: ...

    def parse_detail(self, src: SourceConfig, body: bytes) -> Order: ...

    def describe_error(self, body: bytes) -> str | None: ...


__all__ = ["ADAPTERS", "Adapter", "Request", "Skip"]

ADAPTERS: Final[Mapping[str, Adapter]] = {"acedata": acedata, "lsky": lsky}
