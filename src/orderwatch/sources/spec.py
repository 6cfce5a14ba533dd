"""The values the pipeline works with: a configured ``Source``, the ``Request``\\s an adapter builds, the ``Adapter``
of an API format, and the ``Skip`` test of a full sweep. Pure.

``Source`` is what ``orderwatch.config`` builds from a ``[sources.NAME]`` table (defaults applied, token resolved,
states merged with the adapter's); everything below the config works with it, never with the TOML schema.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, TypeAlias

from orderwatch.core.model import Order, Page
from orderwatch.core.secret import Secret

# Asked of each ordinary list item while a page is parsed: (key, canonical state, canonical JSON) -> True when the
# caller already has that order unchanged; it is then left out of the page (counted in ``Page.skipped``), and never
# becomes an ``Order``. A full sweep's fingerprint index answers it (``FingerprintIndex.unchanged``).
Skip: TypeAlias = Callable[[str, str, bytes], bool]
MultiValue: TypeAlias = Literal["repeat", "comma"]


AuthStyle: TypeAlias = str  # "bearer", "basic", "header:NAME" or "query:NAME"
PagingStyle = Literal["offset", "page", "cursor", "link", "none"]


@dataclass(frozen=True, slots=True)
class Request:
    """One HTTP GET to make: a path under the source's base URL, query pairs (repeats allowed) and headers.

    ``url``: an absolute URL to fetch as given instead (a ``Link: rel="next"`` or a body's next-page URL); it must
    have the base URL's origin (scheme, host, port), which the adapter and the HTTP layer both check."""

    path: str
    params: tuple[tuple[str, str], ...] = ()
    headers: tuple[tuple[str, str], ...] = ()
    url: str | None = None


@dataclass(frozen=True, slots=True)
class JsonPaging:
    """How a generic JSON API pages (``[sources.NAME.paging]``; see CONTRACT.md "Generic JSON sources")."""

    style: PagingStyle = "page"
    size_param: str | None = "per_page"  # None: the API takes no page size
    page_param: str = "page"
    first_page: int = 1
    offset_param: str = "offset"
    cursor_param: str = "starting_after"
    cursor: str = "last_key"  # "last_key" or a dotted path in the body (a value, or a URL to follow as given)
    has_more: str | None = None  # dotted path in the body: false ends the sweep
    total: str | None = None  # dotted path in the body or "header:NAME": how many orders the list holds
    total_pages: str | None = None  # dotted path in the body or "header:NAME": how many pages the list holds
    sort: tuple[tuple[str, str], ...] = ()  # query pairs that make the list newest first and stable
    max_size: int | None = None  # the largest page size the API accepts (the config refuses a larger page_size)


@dataclass(frozen=True, slots=True)
class JsonFilters:
    """Filters a generic JSON API offers (``[sources.NAME.filters]``)."""

    state_param: str | None = None
    updated_since_param: str | None = None


@dataclass(frozen=True, slots=True)
class JsonApi:
    """Where a generic JSON API keeps things: dotted paths into its answers, its endpoints, paging and filters.

    A dotted path walks objects by name and lists by index (``payments.0.method``); "" is the value itself."""

    path: str
    items: str = ""
    key: str = "id"
    state: str = "status"
    created: str | None = None
    updated: str | None = None
    detail_path: str | None = None  # with "{key}"
    detail_items: str | None = None  # where the order sits in a detail answer (None: the body, or its data/order)
    paging: JsonPaging = field(default_factory=JsonPaging)
    filters: JsonFilters = field(default_factory=JsonFilters)
    raw_states: tuple[str, ...] = ()  # the states as the API spells them (for its filters)
    display: tuple[tuple[str, str], ...] = ()  # (label, "path path:minor path:upper …") lines for people
    preset: str | None = None


@dataclass(frozen=True, slots=True)
class Part:
    """A slice of a source's list that the server can count and list: the orders whose *partition value* (an
    immutable attribute: Ace's creation time, Lsky's trade number) lies in ``lo <= value < hi`` (None: unbounded).
    """

    lo: str | None = None
    hi: str | None = None

    def contains(self, value: str | None) -> bool:
        """True when an order with this partition value belongs to the part (None: it has no value)."""
        if value is None:
            return self.lo is None and self.hi is None
        return (self.lo is None or value >= self.lo) and (self.hi is None or value < self.hi)

    def __str__(self) -> str:
        return f"[{self.lo or '…'}, {self.hi or '…'})"


@dataclass(frozen=True, slots=True)
class Partition:
    """How an API lets a list be cut into parts it counts and lists (``Part``), by an immutable value per order.

    ``by``: an order's partition value is its creation time (``Order.created``) or its key. ``split(part, values)``
    cuts ``part`` into smaller parts that together hold every value of ``values`` (the sorted partition values the
    caller knows in ``part``), or returns [] when it cannot be cut further. ``admits(part, value)`` says whether the
    server may list an order with this value when asked for ``part`` (a search that matches more than the part,
    e.g. a substring, is allowed; anything else means the server ignored the filter), and ``exact`` whether its
    counts of parts are exact (then the parts of a part add up to it). ``usable(params)``: False when the user's own
    params already use the filter the parts need.
    """

    by: Literal["created", "key"]
    fanout: int  # how many parts ``split`` usually makes (for cost estimates)
    exact: bool  # the server's count of a part is exactly its orders (a substring search may count a few more)
    split: Callable[[Part, Sequence[str]], list[Part]]
    admits: Callable[[Part, str | None], bool]
    usable: Callable[[Sequence[tuple[str, str]]], bool]
    above: Callable[[str], Part | None]  # the part newer than a creation time (None: the filter cannot say)


@dataclass(frozen=True, slots=True)
class Source:
    """One configured source: what to poll, how, and within which limits. Durations are seconds."""

    name: str
    kind: str
    base_url: str
    token: Secret | None = None
    params: tuple[tuple[str, str], ...] = ()  # extra query pairs sent with every list request
    multi_value: MultiValue = "repeat"  # how a list in params is sent: repeated keys or one comma-joined value
    states: Mapping[str, str] = field(default_factory=dict)  # raw state (case-folded) -> canonical state
    open_states: tuple[str, ...] = ()  # canonical states incremental polls re-check
    page_size: int = 100
    interval: float = 60.0
    jitter: float = 5.0
    timeout: float = 15.0
    retry_budget: float = 120.0
    full_sweep: float = 6 * 3600.0
    incremental: bool = True
    max_pages: int = 1000
    max_response_bytes: int = 32 * 2**20
    allow_insecure_http: bool = False
    ca_bundle: Path | None = None
    auth: AuthStyle = "bearer"  # how the token is sent: bearer, basic (user:secret), header:NAME, query:NAME
    api: JsonApi | None = None  # kind "json": where the API keeps things


class ListRequest(Protocol):
    """Builds the list request at ``cursor`` (``states``: raw states to filter by; ``part``: a slice of the list,
    see ``Partition``)."""

    def __call__(
        self,
        src: Source,
        cursor: int,
        *,
        page_size: int | None = None,
        states: Sequence[str] = (),
        part: Part | None = None,
    ) -> Request: ...


class ParseList(Protocol):
    """Reads one list page (``skip``: see ``Skip``; ``headers``: the answer's headers, for formats that keep
    paging or totals there); ``MalformedResponse``/``ErrorBody`` when it is not one."""

    def __call__(
        self, src: Source, body: bytes, *, skip: Skip | None = None, headers: Mapping[str, str] | None = None
    ) -> Page: ...


@dataclass(frozen=True, slots=True)
class Adapter:
    """One API format: its constants, and the pure functions that build its requests and read its answers.

    ``cursor`` is the adapter's own paging position (an offset, a page number).
    """

    kind: str
    raw_states: tuple[str, ...]  # the states as the API spells them (for its filters)
    default_states: Mapping[str, str]  # raw state (case-folded) -> canonical state
    open_states: tuple[str, ...]  # canonical states an order can still leave (incremental polls re-check them)
    key_field: str
    state_field: str
    first_cursor: Callable[[], int]
    list_request: ListRequest
    # (first page, its cursor, at most n) -> the cursors of the remaining pages as the first page's totals tell
    plan: Callable[[Page, int, int], list[int]]
    next_cursor: Callable[[int, Page], int | None]  # (cursor, page) -> the cursor after it; None at an empty page
    says_last: Callable[[int, Page], bool]  # (cursor, page) -> the page's own totals say no page follows
    parse_list: ParseList
    detail_request: Callable[[Source, str], Request]
    detail_fallback: Callable[[Source, str], Request | None]  # another spelling to try when the first 404s
    parse_detail: Callable[[Source, bytes], Order]
    describe_error: Callable[[bytes], str | None]  # the message of an error answer, if the body carries one
    # an order's creation time as text that sorts like the time (``2024-06-15T10:00:00.123456Z``), if it has one
    created_at: Callable[[Any], str | None]
    filters_state: Callable[[Sequence[tuple[str, str]]], bool]  # the user's own params already filter by state
    display: Callable[[Any], list[tuple[str, str | None]]]  # an order's money/product/payment lines for people
    partition: Partition | None = None  # how the list can be counted part by part (None: it cannot)
    # token paging (a cursor or a Link the page carries in ``Page.next``): the request for the page after ``page``;
    # None: pages are addressed by ``cursor`` alone (``list_request``)
    follow: Callable[[Source, Page], Request] | None = None
