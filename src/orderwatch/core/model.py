"""Frozen, slotted value types that flow through the pipeline. Pure: no I/O, no clock, no logging.

``Order``       one order as a source returned it, with its canonical state and content hash
``Page``        one parsed list page: its orders and the totals the API reported
``Observation`` the result of a sweep: orders by key, and whether the sweep proves absence
``Known``       what the snapshot remembers of an order (enough to diff)
``Event``       a detected change: ``appeared``, ``transition`` or ``vanished``
``Change``      what one observation does to the snapshot: events plus rows to write and remove
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

import orjson
import xxhash

CANONICAL_STATES: Final = ("Pending", "Paid", "Finished", "Expired", "Failed", "Refunded", "Cancelled")
_CANONICAL_BY_FOLD: Final = {s.casefold(): s for s in CANONICAL_STATES}

EventKind = Literal["appeared", "transition", "vanished"]
EVENT_KINDS: Final = ("appeared", "transition", "vanished")


def canonical_state(raw: str, mapping: Mapping[str, str]) -> str:
    """The canonical state for ``raw``: ``mapping`` (keys case-folded) first, then a canonical name, else ``raw``."""
    folded = raw.casefold()
    mapped = mapping.get(folded)
    if mapped is not None:
        return mapped
    return _CANONICAL_BY_FOLD.get(folded, raw)


def is_canonical(state: str) -> bool:
    """True when ``state`` is one of the canonical states."""
    return state in _CANONICAL_BY_FOLD.values()


def fold_state(state: str) -> str:
    """``state`` spelled canonically when it is a canonical state in any case, else unchanged."""
    return _CANONICAL_BY_FOLD.get(state.casefold(), state)


def canonical_json(obj: Any, *, compact: bool = True) -> bytes:
    """``obj`` as compact JSON with sorted keys: the stored form of an order and the input of its hash.

    orjson hands back its 8 KiB working buffer; ``compact`` copies it into an exact-size one, which an order kept
    for a while needs (``Order.compact``) and an order dropped at once does not."""
    try:
        blob = orjson.dumps(obj, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # integers beyond 64 bits and other values orjson refuses
        return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    return bytes(memoryview(blob)) if compact else blob


def content_hash(blob: bytes) -> str:
    """A stable 128-bit hash of an order's canonical JSON (32 hex digits).

    It only tells whether an order's stored copy needs rewriting (events come from states), so it needs to be fast
    and well spread, not cryptographic: XXH3-128 hashes an order in ~0.06 µs where BLAKE2b took ~1 µs, a sixth of
    the client's whole per-order budget in a full sweep."""
    return xxhash.xxh3_128_hexdigest(blob)


@dataclass(frozen=True, slots=True)
class Order:
    """One order as the source returned it. ``created``: its creation time (``2024-06-15T10:00:00.123456Z``), when
    the format has one."""

    key: str
    raw_state: str
    state: str
    raw_json: bytes  # canonical_json of the order as returned
    digest: str  # content_hash(raw_json)
    created: str | None = None

    @classmethod
    def build(
        cls, key: str, raw_state: str, state: str, raw: Any, *, compact: bool = True, created: str | None = None
    ) -> Order:
        """An order from its parsed JSON object: serialises it once and hashes it (``compact``: see ``compact``)."""
        return cls.from_json(key, raw_state, state, canonical_json(raw, compact=compact), created)

    @classmethod
    def from_json(cls, key: str, raw_state: str, state: str, blob: bytes, created: str | None = None) -> Order:
        """An order from its canonical JSON (``canonical_json`` of the object), hashed here."""
        return _new_order(key, raw_state, state, blob, content_hash(blob), created)

    def compact(self) -> Order:
        """This order with its JSON in an exact-size buffer: call it on an order built with ``compact=False`` before
        keeping it (a sweep's pages hold such orders; most are dropped after a look at their hash)."""
        raw_json = bytes(memoryview(self.raw_json))
        return _new_order(self.key, self.raw_state, self.state, raw_json, self.digest, self.created)


# Orders are built by the hundred thousand in a sweep: setting the slots directly costs ~0.3 µs where the frozen
# dataclass's __init__ (object.__setattr__ per field) costs ~0.6 µs. Same fields, same immutability afterwards.
_FIELDS = ("key", "raw_state", "state", "raw_json", "digest", "created")
_SET_ORDER = tuple(Order.__dict__[name].__set__ for name in _FIELDS)


def _new_order(key: str, raw_state: str, state: str, raw_json: bytes, digest: str, created: str | None) -> Order:
    order: Order = object.__new__(Order)
    set_key, set_raw_state, set_state, set_raw_json, set_digest, set_created = _SET_ORDER
    set_key(order, key)
    set_raw_state(order, raw_state)
    set_state(order, state)
    set_raw_json(order, raw_json)
    set_digest(order, digest)
    set_created(order, created)
    return order


@dataclass(frozen=True, slots=True)
class Page:
    """One parsed list page."""

    orders: tuple[Order, ...]
    total: int | None = None  # count / meta.total, when the API said
    last_page: int | None = None  # Laravel meta.last_page
    current_page: int | None = None
    first_item: int | None = None  # Laravel meta.from (1-based)
    has_next: bool | None = None  # an explicit "more pages" signal (links.next), when the API gives one
    skipped: int = 0  # items left out of ``orders``: the caller has them unchanged (``sources.Skip``)
    newest_first: bool | None = None  # the items are in non-increasing creation time (None: cannot tell)
    newest: str | None = None  # the first and last items' creation times (joining pages up)
    oldest: str | None = None
    ends: tuple[str, str] | None = None  # the first and last items' keys (a page repeated at another position)
    next: str | None = None  # token paging: the cursor or URL of the next page as the API gave it (None: the end)

    @property
    def size(self) -> int:
        """How many orders the page listed: ``orders`` and the skipped ones."""
        return len(self.orders) + self.skipped


@dataclass(frozen=True, slots=True)
class Observation:
    """What one sweep of a source saw.

    ``complete``: every page asked for was fetched and parsed. ``consistent``: complete, and the totals did not move
    during the sweep and match the distinct orders seen — only then does the sweep prove that a missing order is gone.
    ``full``: a sweep of the whole list (not an incremental poll); only full sweeps set baselines or report vanished.
    """

    source: str
    orders: Mapping[str, Order]
    complete: bool
    consistent: bool
    full: bool = True
    reason: str | None = None  # why the sweep is incomplete or inconsistent
    requests: int = 0
    bytes: int = 0
    distinct: int | None = None  # distinct orders the sweep saw (also when they were streamed, not kept)
    gone: frozenset[str] = frozenset()  # orders proven absent one by one (a checked detail endpoint's 404, …)
    counts_ok: bool | None = None  # the API's counts held up against what the sweep saw (None: it gave none)
    sorted_ok: bool | None = None  # the list came newest first as asked (None: cannot tell)
    end_reached: bool = False  # the sweep ended at an empty page (the list has nothing past what it saw)
    # the most orders a page held that was shorter than asked and yet followed by more: the server's silent cap on
    # the page size (None: no page showed one)
    served_page: int | None = None

    @property
    def proves_absence(self) -> bool:
        """True when an order missing from this observation can be reported vanished."""
        return self.full and self.complete and self.consistent


@dataclass(frozen=True, slots=True)
class Known:
    """What the snapshot remembers of one order."""

    raw_state: str
    state: str
    digest: str


@dataclass(frozen=True, slots=True)
class Event:
    """A detected change of one order. ``order_json`` is the order as the API returned it (None: fill from store)."""

    source: str
    order_id: str
    kind: EventKind
    from_state: str | None
    to_state: str | None
    raw_from: str | None
    raw_to: str | None
    detected_at: str
    order_json: bytes | None = None
    id: int | None = None

    def order(self) -> Any:
        """The order as the API returned it, parsed."""
        return orjson.loads(self.order_json) if self.order_json else {}

    def as_dict(self) -> dict[str, Any]:
        """The contract's JSON form of the event."""
        return {
            "id": self.id,
            "source": self.source,
            "order_id": self.order_id,
            "kind": self.kind,
            "from_state": self.from_state,
            "to_state": self.to_state,
            "raw_from": self.raw_from,
            "raw_to": self.raw_to,
            "detected_at": self.detected_at,
            "order": self.order(),
        }


@dataclass(frozen=True, slots=True)
class Change:
    """What one observation does to a source's snapshot."""

    events: tuple[Event, ...]
    upserts: tuple[Order, ...]  # new rows and rows whose content hash changed
    removals: tuple[str, ...]  # keys that vanished
    baseline: bool = False  # this observation sets the source's baseline (no events)
    unchanged: int = 0  # orders seen whose content did not change
