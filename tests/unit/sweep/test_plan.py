"""The incremental plan, driven without HTTP against an in-memory server and snapshot (``world.World``)."""

from __future__ import annotations

import functools
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from orderwatch.sweep.plan import Detail, List, Row, incremental, worth_trying
from tests.unit.sweep.world import OPEN, SETTLED, World, spread, trade_no


def steady(n: int = 2000, *, by: str = "created", open_share: float = 0.03, seed: int = 1) -> World:
    """An account in a shop's steady state: settled orders, the newest few still open."""
    rng = random.Random(seed)
    world = World(by=by)  # type: ignore[arg-type]
    times = spread(n)
    for i, created in enumerate(times):
        opened = i >= n * (1 - open_share)
        state = rng.choice(OPEN) if opened else rng.choices(SETTLED, (60, 25, 10, 5))[0]
        key = trade_no(created, i) if by == "key" else f"o{i:06d}"
        world.add(key, state, created)
    return world


def settle(world: World, state: str, to: str, n: int, rng: random.Random) -> list[str]:
    """Move ``n`` orders in ``state`` to ``to`` on the server."""
    keys = rng.sample([k for k, (s, _) in world.server.items() if s == state], n)
    for key in keys:
        world.server[key] = (to, world.server[key][1])
    return keys


def test_a_quiet_account_is_proven_unchanged_with_counts_and_open_lists() -> None:
    """Nothing changed: the newest page, one count per state and the open lists prove it (an open state's count
    comes with its list's first page); nothing is located."""
    world = steady()
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete and not verdict.full_now and not verdict.gone
    assert world.applied(verdict) == world.truth()
    open_pages = sum(-(-sum(1 for s, _ in world.server.values() if s == o) // world.page_size) for o in OPEN)
    assert world.remote == 1 + len(SETTLED) + open_pages


def test_refunds_of_settled_orders_are_located_by_counts() -> None:
    """Finished → Refunded of old orders is found in the same poll, by counting parts, for less than a sweep."""
    world = steady(4000)
    refunded = settle(world, "Finished", "Refunded", 5, random.Random(3))
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete, verdict.reason
    assert all(verdict.seen[k].raw_state == "Refunded" for k in refunded)
    assert world.applied(verdict) == world.truth()
    assert world.remote < world.knowledge().full_pages


def test_deleted_orders_are_proven_gone_and_trade_numbers_cut_the_list() -> None:
    """On a Lsky-like list cut by trade-number prefixes, deleted settled orders are proven gone, moved ones seen."""
    world = steady(3000, by="key")
    rng = random.Random(5)
    moved = settle(world, "Paid", "Refunded", 4, rng)
    deleted = rng.sample([k for k, (s, _) in world.server.items() if s == "Expired"], 3)
    for key in deleted:
        del world.server[key]
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete, verdict.reason
    assert verdict.gone == set(deleted)
    assert {verdict.seen[k].raw_state for k in moved} == {"Refunded"}
    assert world.applied(verdict) == world.truth()


def test_new_orders_are_read_from_the_newest_pages() -> None:
    """Orders newer than every stored one are found on the newest pages, down to a page of known orders."""
    world = steady(1000)
    for i, created in enumerate(spread(45, step=0.5)):
        world.add(f"new{i:03d}", "Pending", "2024-07-01" + created[10:], stored=False)
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete, verdict.reason
    assert {k for k in verdict.seen if k.startswith("new")} == {f"new{i:03d}" for i in range(45)}


def test_open_orders_that_left_are_read_from_a_proven_detail_endpoint() -> None:
    """A few open orders that settled are read one by one once the detail endpoint answered the right order."""
    world = steady(1000)
    gone_open = [k for k, r in world.stored.items() if r.raw_state == "Pending"][:3]
    for key in gone_open:
        world.server[key] = ("Expired", world.server[key][1])
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.learned["detail"][0] is True
    assert all(verdict.seen[k].raw_state == "Expired" for k in gone_open)
    assert verdict.complete and world.applied(verdict) == world.truth()


def test_a_detail_endpoint_that_ignores_the_id_is_never_believed() -> None:
    """A detail endpoint answering another order is learned as broken; the poll still finds where orders went."""
    world = steady(1000)
    world.detail = "ignores_id"
    left = [k for k, r in world.stored.items() if r.raw_state == "Paid"][:2]
    for key in left:
        world.server[key] = ("Finished", world.server[key][1])
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.learned["detail"][0] is False
    assert verdict.complete and world.applied(verdict) == world.truth()


def test_a_server_that_ignores_the_state_filter_gets_a_full_sweep() -> None:
    """Per-state counts that exceed the total mean the state filter is ignored: learned, and a full sweep now."""
    world = steady(1000)
    world.ignores_state = True
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.full_now and verdict.learned["state_filter"][0] is False
    assert not verdict.seen or all(o.raw_state == world.server[k][0] for k, o in verdict.seen.items())


def test_lying_or_missing_counts_get_a_full_sweep() -> None:
    """A list without a count cannot be reconciled: the verdict is a full sweep, with counts learned as broken."""
    world = steady(1000)
    world.counts = "none"
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.full_now and verdict.learned["counts"][0] is False


def test_a_small_account_is_swept_whole() -> None:
    """When a full sweep costs no more requests than the counts an incremental poll starts with, sweep."""
    world = steady(120)
    assert worth_trying(world.knowledge()) is not None
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.full_now and world.remote == 0


def test_substring_search_and_prefix_search_locate_the_same() -> None:
    """A server whose search matches substrings finds the same changes as one matching prefixes only."""
    for search in ("substring", "prefix"):
        world = steady(2500, by="key")
        world.search = search
        refunded = settle(world, "Finished", "Refunded", 3, random.Random(9))
        verdict = world.run(incremental(world.knowledge()))
        assert verdict.complete, (search, verdict.reason)
        assert {verdict.seen[k].raw_state for k in refunded} == {"Refunded"}


def refunds_and_deletions(seed: int) -> tuple[World, list[str], list[str]]:
    """A Lsky-like account where 6 settled orders moved to another settled state and 3 others were deleted."""
    world = steady(4000, by="key", seed=seed)
    rng = random.Random(seed)
    moved = settle(world, "Finished", "Expired", 6, rng)
    deleted = rng.sample([k for k, (s, _) in world.server.items() if s == "Expired" and k not in moved], 3)
    for key in deleted:
        del world.server[key]
    return world, moved, deleted


def test_orders_that_left_a_settled_state_are_read_one_by_one() -> None:
    """Orders missing from a differing part are read from the detail endpoint (proven once), not found by listing
    the part in every state; the moved are seen, the deleted proven gone."""
    world, moved, deleted = refunds_and_deletions(1)
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete, verdict.reason
    assert verdict.gone == set(deleted) and {verdict.seen[k].raw_state for k in moved} == {"Expired"}
    everywhere = [a for a in world.asked if isinstance(a, List) and a.state is None and a.part and a.size > 1]
    assert not everywhere
    assert {a.key for a in world.asked if isinstance(a, Detail)} >= set(deleted)


def test_a_state_that_gained_orders_is_located_first() -> None:
    """Orders that moved between settled states are seen in the listings of the state they went to, without a
    detail read each, even when the state they left lost more (some were deleted)."""
    for seed in range(3):
        world = steady(4000, by="key", seed=seed)
        rng = random.Random(seed)
        moved = settle(world, "Finished", "Expired", 6, rng)
        deleted = rng.sample([k for k, (s, _) in world.server.items() if s == "Finished"], 2)
        for key in deleted:
            del world.server[key]
        verdict = world.run(incremental(world.knowledge()))
        assert verdict.complete and world.applied(verdict) == world.truth(), verdict.reason
        assert verdict.gone == set(deleted)
        assert not {a.key for a in world.asked if isinstance(a, Detail)} & set(moved)


def test_no_question_is_asked_twice() -> None:
    """A small part's count comes with its first page, and listing the part does not ask for that page again."""
    world, _, _ = refunds_and_deletions(2)
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete, verdict.reason
    lists = [a for a in world.asked if isinstance(a, List)]
    assert len(lists) == len(set(lists))
    assert any(a.part is not None and a.size == world.page_size and a.cursor == 0 for a in lists)


def test_the_order_halfway_down_orders_the_counting_and_nothing_else() -> None:
    """Counting a part at its order halfway down says which children to count first: fewer requests; a server
    whose one-order pages ignore the offset costs requests, never a wrong verdict."""
    spent = {}
    for offsets in ("true", "ignored"):
        spent[offsets] = 0
        for seed in range(4):
            world, _, deleted = refunds_and_deletions(seed)
            world.offsets = offsets
            verdict = world.run(incremental(world.knowledge()))
            assert verdict.complete and world.applied(verdict) == world.truth(), (offsets, seed, verdict.reason)
            assert verdict.gone == set(deleted)
            spent[offsets] += world.remote
    assert spent["true"] < spent["ignored"]


def test_a_loss_is_not_looked_for_where_the_snapshot_has_no_orders() -> None:
    """Deleted orders are located by counting only parts that held orders of their state: an empty part cannot
    have lost any."""
    for seed in range(4):
        world = steady(4000, by="key", seed=seed)
        deleted = random.Random(seed).sample([k for k, (s, _) in world.server.items() if s == "Expired"], 3)
        for key in deleted:
            del world.server[key]
        verdict = world.run(incremental(world.knowledge()))
        assert verdict.complete and verdict.gone == set(deleted), verdict.reason
        empty = [
            a
            for a in world.asked
            if isinstance(a, List)
            and a.part is not None
            and a.state is not None
            and not any(r.raw_state == a.state and a.part.contains(r.value) for r in world.stored.values())
        ]
        assert not empty, empty


def test_a_part_whose_orders_all_lie_in_one_child_is_cut_past_it() -> None:
    """Where every order of a state in a part lies in one child, that child is not counted (its count is the
    part's): its own children are."""
    world = steady(3000, by="key", seed=3)
    for key, (state, created) in list(world.server.items()):
        minute = key[8:12]  # Failed: only the orders of 12:00-12:09 and 14:00-14:09
        inside = "1200" <= minute < "1210" or "1400" <= minute < "1410"
        now = "Failed" if inside else "Finished" if state == "Failed" else state
        if now != state:
            world.server[key] = (now, created)
            world.stored[key] = Row(now, key, created)
    gone = next(k for k, (s, _) in sorted(world.server.items()) if s == "Failed" and k[8:12] == "1203")
    del world.server[gone]
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete and verdict.gone == {gone}, verdict.reason
    parts = [a.part.lo for a in world.asked if isinstance(a, List) and a.state == "Failed" and a.part]
    assert "2024061512" in parts and "20240615120" not in parts
    assert "202406151203" in parts


def first_key(world: World, prefix: str, state: str) -> str:
    """The first key on the server that starts with ``prefix`` and is in ``state``."""
    return next(k for k in sorted(world.server) if k.startswith(prefix) and world.server[k][0] == state)


def found_without_locating_finished(world: World, came: list[str], deleted: str, label: object) -> None:
    """Move ``came`` from Finished to Expired and delete ``deleted`` on the server, run the plan, and check that
    its verdict is the server's, the deleted order is proven gone, and Finished was never located."""
    for key in came:
        world.server[key] = ("Expired", world.server[key][1])
    del world.server[deleted]
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete and world.applied(verdict) == world.truth(), (label, verdict.reason)
    assert verdict.gone == {deleted}
    assert not [a for a in world.asked if isinstance(a, List) and a.state == "Finished" and a.part], label


def test_a_small_part_whose_count_matches_is_still_compared_from_its_page() -> None:
    """A part counted with all its orders on one page is compared even when its count matches: an order that came
    and one that was deleted there are found at once, and the state the first left is never located."""
    for seed in (0, 2, 3):
        world = steady(4000, by="key", seed=seed)
        world.page_size = 50
        here, there = "20240615132", "20240615131"  # two ten-minute parts of one hour
        for key in [k for k in sorted(world.server) if k.startswith(there) and world.server[k][0] == "Expired"][1:]:
            world.server[key] = ("Finished", world.server[key][1])  # one Expired order left there
            world.stored[key] = Row("Finished", key, world.server[key][1])
        came = [first_key(world, here, "Finished"), first_key(world, there, "Finished")]
        deleted = first_key(world, here, "Expired")
        found_without_locating_finished(world, came, deleted, seed)


def test_open_orders_that_left_are_looked_for_where_the_count_rose_until_all_are_found() -> None:
    """Many open orders that settled are looked for in the list of the state whose count rose, newest first, and
    in no other state's list once all are found."""
    world = steady(3000)
    pending = [k for k, r in world.stored.items() if r.raw_state == "Pending"]
    assert len(pending) > 30
    for key in pending[:30]:
        world.server[key] = ("Finished", world.server[key][1])
    verdict = world.run(incremental(world.knowledge()))
    assert verdict.complete and world.applied(verdict) == world.truth(), verdict.reason
    listed = {a.state for a in world.asked if isinstance(a, List) and a.part is None and a.size == world.page_size}
    assert "Finished" in listed and not listed & {"Expired", "Failed", "Refunded"}


def test_the_order_halfway_down_splits_a_difference_between_the_newer_and_older_children() -> None:
    """Two orders that came in the newer half of an hour and one deleted in its older half differ by +1 in the
    hour's count: the order halfway down says +2 above it and -1 below, so all three are found in one descent,
    and the state the two came from is never located."""
    for seed in range(3):
        world = steady(4000, by="key", seed=seed)
        hour = "2024061512"
        came = [first_key(world, hour + "5", "Finished"), first_key(world, hour + "4", "Finished")]
        found_without_locating_finished(world, came, first_key(world, hour + "0", "Expired"), seed)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    by=st.sampled_from(["created", "key"]),
    refunds=st.integers(0, 6),
    settles=st.integers(0, 30),
    deletions=st.integers(0, 4),
    new=st.integers(0, 30),
    backdated=st.integers(0, 2),
)
def test_whatever_changed_a_complete_verdict_is_the_truth(
    seed: int, by: str, refunds: int, settles: int, deletions: int, new: int, backdated: int
) -> None:
    """Any mix of changes: a complete verdict equals the server; every sighting is true; gone orders are gone."""
    rng = random.Random(seed)
    world = steady(1500, by=by, seed=seed)
    settle(world, "Finished", "Refunded", refunds, rng)
    opened = [k for k, (s, _) in world.server.items() if s in OPEN]
    for key in rng.sample(opened, min(settles, len(opened))):
        world.server[key] = (rng.choice(("Paid", "Finished", "Expired", "Failed")), world.server[key][1])
    for key in rng.sample(sorted(world.server), deletions):
        del world.server[key]
    newest = max(c for _, c in world.server.values())
    for i, created in enumerate(spread(new + backdated, step=1.0)):
        when = created if i >= new else spread(1500)[rng.randrange(1500)][:-3] + "77Z"
        stamp = newest[:4] + "-07" + created[7:] if i < new else when
        key = trade_no(stamp, 90000 + i) if by == "key" else f"n{i:05d}"
        world.add(key, "Pending", stamp, stored=False)
    verdict = world.run(incremental(world.knowledge()))
    truth = world.truth()
    assert all(o.raw_state == truth[k] for k, o in verdict.seen.items())
    assert not (verdict.gone & truth.keys())
    if verdict.complete:
        assert world.applied(verdict) == truth


def delete_the_newest_once(drifted: list[str], world: World, ask: List) -> None:
    """Before the first later page of a part's list in every state: delete the part's newest order (listed on its
    first page), which pulls the order after that page up past it, unseen."""
    if drifted or ask.state is not None or ask.part is None or ask.cursor == 0:
        return
    keys = world.listed(None, ask.part)
    if len(keys) > ask.cursor:
        drifted.append(keys[0])
        del world.server[keys[0]]


def test_a_part_whose_count_moved_while_it_was_paged_proves_nothing_gone() -> None:
    """An order deleted from a part's first page while its second is asked pulls a row up unseen: the part's
    totals moved, so the listing is no proof of absence and no order still on the server is called gone."""
    for seed in range(3):
        world, _, _ = refunds_and_deletions(seed)
        world.detail, world.page_size = "none", 5
        drifted: list[str] = []
        world.before_list = functools.partial(delete_the_newest_once, drifted)
        verdict = world.run(incremental(world.knowledge()))
        assert drifted, f"seed {seed}: no part was listed over two pages, so nothing drifted"
        (deleted,) = drifted
        assert not verdict.gone & set(world.server), (seed, sorted(verdict.gone & set(world.server)))
        if verdict.complete:  # the deleted order was seen on the first page, before it went
            assert {**world.truth(), deleted: verdict.seen[deleted].raw_state} == world.applied(verdict), seed
