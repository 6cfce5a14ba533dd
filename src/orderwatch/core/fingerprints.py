"""The stored orders of one source as fingerprints in flat arrays, for one full sweep. Pure: no I/O.

A full sweep meets every stored order again, and nearly all of them are unchanged. Asking SQLite about each one
costs ~7 µs an order; this index answers "is this order unchanged?" in well under a microsecond, from memory that
stays small (17 bytes a slot, at most half the slots used: 36 MB for a million orders, where a dict of the same
would take three times that). It is asked while a page is parsed, so an unchanged order never becomes an ``Order``.

Each order has a 63-bit *tag* (``tag_of`` its key) and a 63-bit *fingerprint* (``fingerprint`` of its canonical
JSON, keyed by its canonical state). The store keeps both in every row, so the index is read as two integers a row.
Each stored order fills one slot of two flat arrays (open addressing, linear probing); a slot also remembers whether
the sweep saw the order. An order whose tag and fingerprint both match is unchanged and seen; anything else (a new
order, a changed one, a tag shared by another key) is a *miss*, which the caller settles exactly against the store,
then ``mark``\\s.

Two stored keys with the same tag (one chance in 10^7 for a million orders) make the index ``ambiguous``: the
caller then settles every order exactly, as if there were no index.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable

import xxhash

_BITS = TAG_BITS = (1 << 63) - 1  # tags and fingerprints are non-negative 63-bit integers: SQLite's INTEGER holds them
_h64 = hash64 = xxhash.xxh3_64_intdigest  # hash64(data, seed=0): for loops that inline tag_of and fingerprint


def tag_of(key: str) -> int:
    """An order key's tag: 63 bits of XXH3-64 of its UTF-8 (never 0, which marks an empty slot)."""
    return (_h64(key.encode()) & _BITS) or 1


def fingerprint(blob: bytes, state: str) -> int:
    """The fingerprint of an order's canonical JSON ``blob`` and canonical ``state``: XXH3-64 of the JSON, seeded
    with a hash of the state, so that the same JSON under another state mapping does not match."""
    return _h64(blob, _h64(state.encode())) & _BITS


def state_seed(state: str) -> int:
    """The seed of the fingerprints of orders in canonical ``state``: ``fingerprint(blob, state)`` is
    ``hash64(blob, state_seed(state)) & TAG_BITS`` (and ``tag_of(key)`` is ``(hash64(key.encode()) & TAG_BITS)
    or 1``), for loops that inline them."""
    return _h64(state.encode())


class FingerprintIndex:
    """Tags and fingerprints of stored orders, with a seen mark per slot."""

    __slots__ = ("_fps", "_mask", "_seeds", "_seen", "_tags", "ambiguous", "hits", "size")

    def __init__(self, capacity: int) -> None:
        slots = 8
        while slots < 2 * capacity:
            slots *= 2
        self._mask = slots - 1
        self._tags = array("q", bytes(8 * slots))  # 0: an empty slot
        self._fps = array("q", bytes(8 * slots))
        self._seen = bytearray(slots)
        self._seeds: dict[str, int] = {}  # canonical state -> the seed of its fingerprints
        self.size = 0  # stored orders in the index
        self.hits = 0  # orders found unchanged (a row met twice counts twice)
        self.ambiguous = False  # two stored keys share a tag: the index must not be trusted

    @classmethod
    def build(cls, rows: Iterable[tuple[int, int]], capacity: int) -> FingerprintIndex:
        """The index of ``rows`` — ``(tag, fingerprint)`` of each stored order; ``capacity`` at least their number
        (more rows than that is a caller's bug: ``ValueError``)."""
        index = cls(capacity)
        # one loop, all locals: a million stored orders go through it at the start of every full sweep
        tags, fps, mask = index._tags, index._fps, index._mask
        limit = (mask + 1) // 2
        size = 0
        ambiguous = False
        for tag, fp in rows:
            if size >= limit:
                raise ValueError(f"fingerprint index full at {size} orders")  # a caller's bug, not bad input
            i = tag & mask
            while (t := tags[i]) != 0:
                if t == tag:
                    ambiguous = True
                i = (i + 1) & mask
            tags[i] = tag
            fps[i] = fp
            size += 1
        index.size, index.ambiguous = size, ambiguous
        return index

    def view(self) -> FingerprintIndex:
        """A fresh view for one sweep: the same tags and fingerprints (shared, not copied), nothing seen yet."""
        view = FingerprintIndex.__new__(FingerprintIndex)
        view._tags, view._fps, view._mask, view._seeds = self._tags, self._fps, self._mask, self._seeds
        view._seen = bytearray(self._mask + 1)
        view.size, view.ambiguous = self.size, self.ambiguous
        view.hits = 0
        return view

    def put(self, tag: int, fp: int) -> bool:
        """Record a stored order written anew: its fingerprint replaces the one under ``tag``, or it takes a new
        slot. False when the index is full (the caller drops it). The caller rules out a ``tag`` shared by two keys.
        """
        tags, mask = self._tags, self._mask
        i = tag & mask
        while (t := tags[i]) != tag:
            if t == 0:
                if self.size >= (mask + 1) // 2:
                    return False
                tags[i] = tag
                self.size += 1
                break
            i = (i + 1) & mask
        self._fps[i] = fp
        return True

    def entries(self) -> list[tuple[int, int]]:
        """Every (tag, fingerprint) held, sorted (for checks and tests)."""
        return sorted((t, f) for t, f in zip(self._tags, self._fps, strict=True) if t)

    def find(self, key: str, state: str, blob: bytes) -> int:
        """The slot of the order ``key`` when it is stored with this canonical ``state`` and canonical JSON
        ``blob``, else -1 (a miss: the caller settles that order exactly). Reads the index only, so one thread may
        ask while another marks (the state seeds it caches are the same whoever computes them)."""
        # asked of every order of a full sweep: tag_of and fingerprint are inlined, with the state seeds cached
        tag = (_h64(key.encode()) & _BITS) or 1
        tags = self._tags
        i = tag & self._mask
        while (t := tags[i]) != tag:
            if t == 0:
                return -1
            i = (i + 1) & self._mask
        seed = self._seeds.get(state)
        if seed is None:
            seed = _h64(state.encode())
            if len(self._seeds) < 64:  # the states of one source are few; an API's odd spellings are not kept
                self._seeds[state] = seed
        if self._fps[i] != _h64(blob, seed) & _BITS:
            return -1
        return i

    def mark_slots(self, slots: Iterable[int]) -> None:
        """Mark the orders in these slots (found by ``find``) seen; each counts as a hit."""
        seen = self._seen
        n = 0
        for i in slots:
            seen[i] = 1
            n += 1
        self.hits += n

    def unchanged(self, key: str, state: str, blob: bytes) -> bool:
        """True when the order ``key`` is stored with this canonical ``state`` and canonical JSON ``blob``: it is
        then marked seen. False for a miss (nothing marked): the caller settles that order exactly."""
        i = self.find(key, state, blob)
        if i < 0:
            return False
        self.hits += 1
        self._seen[i] = 1
        return True

    def _slot(self, key: str) -> int | None:
        """The slot holding ``key``'s tag, if any."""
        tag = tag_of(key)
        tags, mask = self._tags, self._mask
        i = tag & mask
        while (t := tags[i]) != tag:
            if t == 0:
                return None
            i = (i + 1) & mask
        return i

    def mark(self, key: str) -> bool | None:
        """Mark a stored order (its presence confirmed by the caller) as seen: True if it was not seen before, False
        if it was, None if ``key`` has no slot (it was not stored when the index was built)."""
        i = self._slot(key)
        if i is None:
            return None
        if self._seen[i]:
            return False
        self._seen[i] = 1
        return True

    def seen(self, key: str) -> bool:
        """True when the sweep has seen the stored order ``key``."""
        i = self._slot(key)
        return i is not None and bool(self._seen[i])

    @property
    def marked(self) -> int:
        """How many stored orders the sweep has seen, counted from the marks (a slot marked twice counts once)."""
        return self._seen.count(1)

    @property
    def all_seen(self) -> bool:
        """True when the sweep has seen every order in the index."""
        return self.marked == self.size
