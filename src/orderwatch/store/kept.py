"""Each source's fingerprint index, kept between full sweeps and in step with the store's own writes.

A sweep borrows the index (``lend``) and gives it back (``give_back``); while it is lent, the rows the store
writes wait in ``pending`` and reach the arrays when it comes back, so a sweep never sees them move. After every
write transaction the store says what it wrote (``after_commit``): the rows' tags and fingerprints, or ``None``
when the kept copy cannot follow (removed rows, a tag now shared by two keys, a failed write), which forgets it.
Another connection's write shows in ``PRAGMA data_version``: the next ``lend`` reads the index afresh.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field

from orderwatch.core.fingerprints import FingerprintIndex, tag_of

Prints = list[tuple[int, int]]  # (tag, fingerprint) of rows written


@dataclass(slots=True)
class _Kept:
    """A source's kept index, and the rows written while a sweep reads it."""

    index: FingerprintIndex
    version: int  # PRAGMA data_version when read: another connection's write makes it stale
    lent: FingerprintIndex | None = None  # the view a sweep is using
    pending: Prints = field(default_factory=list)


class KeptIndex:
    """The kept fingerprint indexes of one store, by source. Callers hold the store's lock."""

    def __init__(self) -> None:
        self._kept: dict[str, _Kept] = {}

    def lend(self, conn: sqlite3.Connection, source: str) -> FingerprintIndex:
        """Every stored order of ``source`` in a ``FingerprintIndex`` for one sweep (``conn`` outside a
        transaction): the kept one when it is current and not lent, else one read row by row (memory stays flat)."""
        (version,) = conn.execute("PRAGMA data_version").fetchone()
        kept = self._kept.get(source)
        if kept is not None and kept.version == version and kept.lent is None:
            kept.lent = kept.index.view()
            return kept.lent
        conn.execute("BEGIN")  # one read snapshot: the count and the rows agree
        try:
            (count,) = conn.execute("SELECT count(*) FROM orders WHERE source = ?", (source,)).fetchone()
            rows = conn.execute("SELECT tag, fp FROM orders WHERE source = ?", (source,))
            index = FingerprintIndex.build(rows, count)
        finally:
            conn.execute("COMMIT")
        if kept is not None and kept.lent is not None:
            return index.view()  # another sweep of this source has the kept one (not done by the poller)
        if index.ambiguous:
            self._kept.pop(source, None)
            return index
        kept = self._kept[source] = _Kept(index, version)
        kept.lent = index.view()
        return kept.lent

    def give_back(self, source: str, index: FingerprintIndex) -> None:
        """A sweep is done with ``index``: the rows written meanwhile reach the kept index now."""
        kept = self._kept.get(source)
        if kept is None or kept.lent is not index:
            return
        kept.lent = None
        pending, kept.pending = kept.pending, []
        self.after_commit(source, pending)

    def follows(self, source: str, written: Prints, added: Sequence[str], *, removed: bool) -> Prints | None:
        """What a write (inside its transaction) means for the kept index: its rows, or None when the kept index
        cannot follow it (removed rows; an ``added`` key whose tag a stored key, or another added key, has)."""
        if removed:
            return None
        kept = self._kept.get(source)
        if kept is None or not added:
            return written
        probe = kept.index.view()  # a scratch view: mark() is None exactly when no stored key has the key's tag
        tags = {tag for tag, _ in kept.pending}  # rows written while the index is lent are not in its arrays yet
        for key in added:
            tag = tag_of(key)
            if tag in tags or probe.mark(key) is not None:
                return None
            tags.add(tag)
        return written

    def after_commit(self, source: str, written: Prints | None) -> None:
        """Bring the kept index of ``source`` up to date with committed rows (``None``: forget it)."""
        kept = self._kept.get(source)
        if kept is None:
            return
        if written is None or len(kept.pending) > kept.index.size:
            del self._kept[source]
        elif kept.lent is not None:  # a sweep reads the arrays: they change when it is done
            kept.pending.extend(written)
        elif not all(kept.index.put(tag, fp) for tag, fp in written):
            del self._kept[source]
