"""The stored orders of one source as fingerprints in flat arrays, for one full sweep. Pure: no I/O.

A full sweep meets every stored order again, and nearly all of them are unchanged. Asking SQLite about each one
costs ~7 µs an order; this index answers "is this order unchanged?" in well under a microsecond, from memory that
stays small (17 bytes a slot, at most half the slots used: 36 MB for a million orders, where a dict of the same
would take three times that).

Each stored order fills one slot of two flat arrays (open addressing, linear probing): the tag is ``hasher(key)``
(64 bits), the value a 60-bit fingerprint of its content hash and canonical state. A slot also remembers whether
the sweep saw the order. An order whose tag and fingerprint both match is unchanged and seen; anything else (a new
order, a changed one, a tag shared by another key) is a *miss*, which the caller settles exactly against the store,
then ``mark``\\s.

Two stored keys with the same tag (one chance in 10^8 for a million orders) make the index ``ambiguous``: the
caller then settles every order exactly, as if there were no index.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from orderwatch.model import Order

_FP_BITS = (1 << 60) - 1  # fingerprints keep 60 bits of the content hash


class FingerprintIndex:
    """Tags and fingerprints of stored orders, with a seen mark per slot."""

    __slots__ = ("_fps", "_hasher", "_mask", "_seen", "_state_bits", "_tags", "ambiguous", "marked", "size")

    def __init__(self, capacity: int, *, hasher: Callable[[str], int] = hash) -> None:
        slots = 8
        while slots < 2 * capacity:
            slots *= 2
        self._mask = slots - 1
        self._tags = array("q", bytes(8 * slots))  # 0: an empty slot
        self._fps = array("q", bytes(8 * slots))
        self._seen = bytearray(slots)
        self._hasher = hasher
        self._state_bits: dict[str, int] = {}
        self.size = 0  # stored orders in the index
        self.marked = 0  # of those, how many the sweep has seen
        self.ambiguous = False  # two stored keys share a tag: the index must not be trusted

    @classmethod
    def build(
        cls, rows: Iterable[tuple[str, str, str]], capacity: int, *, hasher: Callable[[str], int] = hash
    ) -> FingerprintIndex:
        """The index of ``rows`` — ``(key, state, digest)`` of each stored order; ``capacity`` at least their number
        (more rows than that is a caller's bug: ``ValueError``)."""
        index = cls(capacity, hasher=hasher)
        # one loop, all locals: a million stored orders go through it at the start of every full sweep
        tags, fps, mask, state_bits = index._tags, index._fps, index._mask, index._state_bits
        limit = (mask + 1) // 2
        size = 0
        ambiguous = False
        for key, state, digest in rows:
            if size >= limit:
                raise ValueError(f"fingerprint index full at {size} orders")  # a caller's bug, not bad input
            tag = hasher(key) or 1
            i = tag & mask
            while (t := tags[i]) != 0:
                if t == tag:
                    ambiguous = True
                i = (i + 1) & mask
            tags[i] = tag
            bits = state_bits.get(state)
            if bits is None:
                bits = state_bits[state] = hash(state) & _FP_BITS
            fps[i] = int(digest[:15], 16) ^ bits
            size += 1
        index.size, index.ambiguous = size, ambiguous
        return index

    def fingerprint(self, state: str, digest: str) -> int:
        """A 60-bit fingerprint of an order's content hash (hex) and canonical state."""
        bits = self._state_bits.get(state)
        if bits is None:
            bits = self._state_bits[state] = hash(state) & _FP_BITS
        return int(digest[:15], 16) ^ bits

    def _tag(self, key: str) -> int:
        return self._hasher(key) or 1  # 0 marks an empty slot

    def take(self, orders: Sequence[Order]) -> tuple[list[int], int]:
        """Check a page's orders against the index: returns the positions of the misses in ``orders``, and how many
        matched orders the sweep had not seen before (matched orders are marked seen)."""
        tags, fps, seen, mask, hasher = self._tags, self._fps, self._seen, self._mask, self._hasher
        state_bits = self._state_bits
        misses: list[int] = []
        new = 0
        for pos, order in enumerate(orders):
            tag = hasher(order.key) or 1
            i = tag & mask
            while (t := tags[i]) != tag:
                if t == 0:
                    break
                i = (i + 1) & mask
            else:
                bits = state_bits.get(order.state)
                if bits is not None and fps[i] == int(order.digest[:15], 16) ^ bits:
                    if not seen[i]:
                        seen[i] = 1
                        new += 1
                    continue
            misses.append(pos)
        self.marked += new
        return misses, new

    def _slot(self, key: str) -> int | None:
        """The slot holding ``key``'s tag, if any."""
        tag = self._tag(key)
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
        self.marked += 1
        return True

    def seen(self, key: str) -> bool:
        """True when the sweep has seen the stored order ``key``."""
        i = self._slot(key)
        return i is not None and bool(self._seen[i])

    @property
    def states(self) -> list[str]:
        """The canonical states of the orders in the index."""
        return list(self._state_bits)

    @property
    def all_seen(self) -> bool:
        """True when the sweep has seen every order in the index."""
        return self.marked == self.size
