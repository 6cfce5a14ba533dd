"""``GenericOptions``: everything a configurable JSON orders API can vary, checked once when it is made."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Literal

PagingStyle = Literal["offset", "page", "cursor", "link", "none"]
GENERIC_TRANSITIONS: Final[Mapping[str, tuple[str, ...]]] = {
    "pending": ("paid", "cancelled", "failed"),
    "paid": ("shipped", "refunded"),
    "shipped": ("delivered", "refunded"),
    "delivered": ("refunded",),
    "cancelled": (),
    "failed": (),
    "refunded": (),
}
_AUTH: Final = re.compile(r"^(bearer|basic|none|header:[A-Za-z0-9-]+|query:[A-Za-z0-9_.\[\]-]+)$")


@dataclass(frozen=True, slots=True)
class GenericOptions:
    """A JSON orders API described by configuration: where things are, how it pages, how it authenticates.

    Field paths (``key``, ``state``, ``created``, ``updated``) and body paths (``items``, ``has_more``, ``total``,
    a body ``cursor``) are dotted (``"order.meta.id"``); ``items=""`` means the body is the list itself.
    ``paging``: ``offset`` (``offset_param`` counts items), ``page`` (``page_param`` from ``first_page``),
    ``cursor`` (``cursor_param`` is the last item's key when ``cursor="last_key"``, else an opaque token the API
    writes at the body path ``cursor``, null on the last page), ``link`` (an RFC 8288 ``Link: <...>; rel="next"``
    header, absent on the last page) or ``none`` (everything in one answer). ``total``: a body path or
    ``header:NAME``. ``auth``: ``bearer``, ``basic`` (token ``user:secret``), ``header:NAME``, ``query:NAME`` or
    ``none``. ``state_param`` filters by raw states (comma list); ``updated_since_param`` keeps orders updated at
    or after an ISO 8601 time (unix seconds when ``time_format="unix"``); ``order_param`` takes ``asc``/``desc``."""

    path: str = "/api/orders"
    detail_path: str | None = "/api/orders/{key}"
    items: str = "data"
    key: str = "id"
    state: str = "status"
    created: str | None = "created_at"
    updated: str | None = "updated_at"
    key_style: Literal["int", "uuid", "prefixed"] = "int"
    time_format: Literal["iso", "iso_micro", "unix"] = "iso"
    transitions: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(GENERIC_TRANSITIONS))
    births: tuple[tuple[str, float], ...] = (("pending", 1.0),)
    deletable: bool = True
    paging: PagingStyle = "page"
    size_param: str = "per_page"
    page_param: str = "page"
    offset_param: str = "offset"
    cursor_param: str = "cursor"
    cursor: str = "last_key"
    first_page: int = 1
    default_size: int = 20
    max_size: int = 100
    oversize: Literal["clamp", "reject"] = "clamp"
    has_more: str | None = None
    total: str | None = None
    auth: str = "bearer"
    state_param: str | None = None
    updated_since_param: str | None = None
    order: Literal["newest", "oldest"] = "newest"
    order_param: str | None = None

    def __post_init__(self) -> None:
        problems = []
        if not _AUTH.match(self.auth):
            problems.append(f"auth {self.auth!r} is not bearer, basic, none, header:NAME or query:NAME")
        if not self.path.startswith("/") or (self.detail_path is not None and "{key}" not in self.detail_path):
            problems.append("path must start with / and detail_path must contain {key}")
        body_paths = [p for p in (self.has_more, self.total) if p and not p.startswith("header:")]
        if self.paging == "cursor" and self.cursor != "last_key":
            body_paths.append(self.cursor)
        if self.items == "" and body_paths:
            problems.append(f"the body is the list (items=''), so {body_paths} cannot be written into it")
        if not self.key or not self.state:
            problems.append("key and state paths must not be empty")
        unknown = {s for nxt in self.transitions.values() for s in nxt} - set(self.transitions)
        unknown |= {s for s, _ in self.births} - set(self.transitions)
        if unknown:
            problems.append(f"states {sorted(unknown)} are used but not listed in transitions")
        if not 1 <= self.default_size <= self.max_size:
            problems.append("default_size must be between 1 and max_size")
        if problems:
            raise ValueError("invalid GenericOptions: " + "; ".join(problems))
