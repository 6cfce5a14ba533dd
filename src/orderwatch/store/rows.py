"""The store's row types, and their mapping from SQLite rows by column name.

Every query that builds one of these names its columns (``*_COLUMNS``) and reads them by name, so a column that a
later migration adds, wherever it lands in the table, cannot shift a field.
"""

from __future__ import annotations

import dataclasses
import sqlite3
from dataclasses import dataclass
from typing import Final, Protocol, TypeVar

import orjson

from orderwatch.core.model import Event, EventKind

R = TypeVar("R", "OrderRow", "SilenceRow")


class DeliveryLike(Protocol):
    """What ``record`` needs of a routed delivery (``orderwatch.rules.Delivery``)."""

    @property
    def channel(self) -> str: ...
    @property
    def rule(self) -> str: ...
    @property
    def event_indexes(self) -> tuple[int, ...]: ...
    @property
    def digest(self) -> bool: ...


@dataclass(frozen=True, slots=True)
class SourceState:
    """The bookkeeping row of one source."""

    name: str
    baseline_at: str | None
    last_poll_at: str | None
    last_success_at: str | None
    last_full_at: str | None
    last_error: str | None
    last_error_at: str | None
    failures: int
    failing_since: str | None
    alerted: bool
    orders: int
    last_requests: int | None
    last_duration: float | None
    next_poll_at: str | None
    baseline_tries: int = 0  # complete full sweeps that were not consistent enough to be the baseline
    full_due: str | None = None  # what the last poll could not settle: the next poll sweeps in full
    served_page: int | None = None  # the server's cap on the page size, as the last complete full sweep saw it


@dataclass(frozen=True, slots=True)
class OrderRow:
    """One snapshot row, for ``orderwatch orders``."""

    source: str
    key: str
    raw_state: str
    state: str
    first_seen: str
    changed_at: str
    raw: str


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One notification waiting, sent or failed."""

    id: int
    channel: str
    rule: str
    digest: bool
    event_ids: tuple[int, ...]
    status: str
    attempts: int
    created_at: str
    next_attempt_at: str
    done_urls: tuple[int, ...]
    last_error: str | None
    sent_at: str | None
    title: str | None = None  # a free-form notice (health alert, test message) instead of events
    body: str | None = None


@dataclass(frozen=True, slots=True)
class EventFilter:
    """Filters of ``orderwatch changes``; every field optional."""

    since: str | None = None
    source: str | None = None
    order_id: str | None = None
    state: str | None = None
    kind: str | None = None
    after_id: int | None = None
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class SilenceRow:
    """One silence; ``expired_at`` is set when it was ended by hand."""

    id: int
    source: str
    order_id: str | None
    rule: str | None
    comment: str
    created_at: str
    ends_at: str
    expired_at: str | None

    def active(self, now: str) -> bool:
        """True while it silences (``now`` in the stored timestamp form)."""
        return self.expired_at is None and now < self.ends_at

    def ended_at(self) -> str:
        """When it ended, or ends."""
        return self.expired_at if self.expired_at is not None and self.expired_at < self.ends_at else self.ends_at


SOURCE_COLUMNS: Final = (
    "name, baseline_at, last_poll_at, last_success_at, last_full_at, last_error, last_error_at, failures,"
    " failing_since, alerted, orders, last_requests, last_duration, next_poll_at, baseline_tries, full_due,"
    " served_page"
)
ORDER_COLUMNS: Final = "source, key, raw_state, state, first_seen, changed_at, raw"
EVENT_COLUMNS: Final = "id, source, order_id, kind, from_state, to_state, raw_from, raw_to, detected_at, order_json"
SILENCE_COLUMNS: Final = "id, source, order_id, rule, comment, created_at, ends_at, expired_at"
OUTBOX_COLUMNS: Final = (
    "id, channel, rule, digest, event_ids, status, attempts, created_at, next_attempt_at, done_urls, last_error,"
    " sent_at, title, body"
)


def source_state(row: sqlite3.Row) -> SourceState:
    """A ``sources`` row (``SOURCE_COLUMNS``)."""
    return SourceState(
        name=row["name"],
        baseline_at=row["baseline_at"],
        last_poll_at=row["last_poll_at"],
        last_success_at=row["last_success_at"],
        last_full_at=row["last_full_at"],
        last_error=row["last_error"],
        last_error_at=row["last_error_at"],
        failures=row["failures"],
        failing_since=row["failing_since"],
        alerted=bool(row["alerted"]),
        orders=row["orders"],
        last_requests=row["last_requests"],
        last_duration=row["last_duration"],
        next_poll_at=row["next_poll_at"],
        baseline_tries=row["baseline_tries"],
        full_due=row["full_due"],
        served_page=row["served_page"],
    )


def order_row(row: sqlite3.Row) -> OrderRow:
    """An ``orders`` row (``ORDER_COLUMNS``)."""
    return _by_name(OrderRow, row)


def event(row: sqlite3.Row) -> Event:
    """An ``events`` row (``EVENT_COLUMNS``)."""
    kind: EventKind = row["kind"]
    return Event(
        source=row["source"],
        order_id=row["order_id"],
        kind=kind,
        from_state=row["from_state"],
        to_state=row["to_state"],
        raw_from=row["raw_from"],
        raw_to=row["raw_to"],
        detected_at=row["detected_at"],
        order_json=row["order_json"].encode(),
        id=row["id"],
    )


def outbox_row(row: sqlite3.Row) -> OutboxRow:
    """An ``outbox`` row (``OUTBOX_COLUMNS``)."""
    return OutboxRow(
        id=row["id"],
        channel=row["channel"],
        rule=row["rule"],
        digest=bool(row["digest"]),
        event_ids=tuple(orjson.loads(row["event_ids"])),
        status=row["status"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        done_urls=tuple(orjson.loads(row["done_urls"])),
        last_error=row["last_error"],
        sent_at=row["sent_at"],
        title=row["title"],
        body=row["body"],
    )


def silence(row: sqlite3.Row) -> SilenceRow:
    """A ``silences`` row (``SILENCE_COLUMNS``)."""
    return _by_name(SilenceRow, row)


def _by_name(cls: type[R], row: sqlite3.Row) -> R:
    """A row type whose fields are columns of the same names, taken as they are."""
    return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})
