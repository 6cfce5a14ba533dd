"""How each adapter cuts its list into parts the server can count: boundaries, children, what a server may list."""

from __future__ import annotations

from orderwatch.sources import Part, acedata, lsky, make_source
from orderwatch.sources._parse import iso_time, time_order


def test_ace_cuts_a_range_between_two_known_times_at_least_two_microseconds_apart() -> None:
    """The boundary lies one microsecond after a known time, with another microsecond before the next one, so a
    server reading the bound as inclusive or exclusive counts the same known orders."""
    values = [
        "2024-06-15T10:00:00.000000Z",
        "2024-06-15T10:00:00.000001Z",  # one microsecond on: no boundary fits here
        "2024-06-15T10:00:01.000000Z",
        "2024-06-15T10:00:02.000000Z",
    ]
    left, right = acedata.split(Part(), values)
    assert left == Part(None, right.lo) and right.hi is None
    assert right.lo in {"2024-06-15T10:00:00.000002Z", "2024-06-15T10:00:01.000001Z"}
    assert all(v != right.lo for v in values)


def test_ace_cannot_cut_times_that_are_all_alike() -> None:
    """Orders created within a microsecond of each other cannot be told apart by a range: no cut."""
    same = ["2024-06-15T10:00:00.000000Z"] * 5 + ["2024-06-15T10:00:00.000001Z"]
    assert acedata.split(Part(), same) == []
    assert acedata.split(Part(), same[:1]) == []


def test_ace_parts_become_created_at_bounds_and_lists_outside_them_are_refused() -> None:
    """A part is sent as created_at_from/created_at_to; only orders inside it are admitted."""
    part = Part("2024-06-15T10:00:00.000001Z", "2024-06-16T00:00:00.000001Z")
    req = acedata.list_request(make_source("a", "acedata", "https://x"), 0, states=("Paid",), part=part)
    assert ("created_at_from", part.lo) in req.params and ("created_at_to", part.hi) in req.params
    assert ("state", "Paid") in req.params
    assert acedata.PARTITION.admits(part, "2024-06-15T12:00:00.000000Z")
    assert not acedata.PARTITION.admits(part, "2024-06-16T12:00:00.000000Z")


def test_lsky_cuts_trade_numbers_by_one_more_digit_of_their_time() -> None:
    """Below the keys' common prefix, a part gets one child per digit the time allows there (hours 0-2 tens)."""
    keys = sorted(["2024061510000012345_002", "2024061523595954321_002", "2024061512000000001_002"])
    children = lsky.split(Part(), keys)
    assert [c.lo for c in children] == ["202406150", "202406151", "202406152"]  # hour tens: 0, 1, 2
    hours = lsky.split(Part("202406152", "202406153"), keys)
    assert [c.lo for c in hours] == ["2024061520", "2024061521", "2024061522", "2024061523"]  # 20-23 only
    assert lsky.split(Part("2024061510000012345", "2024061510000012346"), keys) == []


def test_lsky_search_may_list_substring_matches_but_not_unrelated_orders() -> None:
    """A bare word may match in the middle of a trade number (admitted, not in the part); an order without the
    word means the search was ignored."""
    part = Part("20240615", "20240616")
    assert lsky.PARTITION.admits(part, "2024061510000012345_002") and part.contains("2024061510000012345_002")
    inside_word = "2024070520240615999_002"
    assert lsky.PARTITION.admits(part, inside_word) and not part.contains(inside_word)
    assert not lsky.PARTITION.admits(part, "2024070510000012345_002")


def test_times_are_compared_in_one_text_form() -> None:
    """ISO times in other forms (offsets, no fraction) become the one sortable UTC form; others are None."""
    assert iso_time("2024-06-15T10:00:00.123456Z") == "2024-06-15T10:00:00.123456Z"
    assert iso_time("2024-06-15T18:00:00+08:00") == "2024-06-15T10:00:00.000000Z"
    assert iso_time("2024-06-15 10:00:00") == "2024-06-15T10:00:00.000000Z"
    assert iso_time("yesterday") is None and iso_time(12) is None


def test_a_page_says_whether_it_is_newest_first() -> None:
    """time_order reads the creation times of a page's items: in order, first and last; None without times."""
    items = [{"created_at": t} for t in ("2024-06-15T10:00:02Z", "2024-06-15T10:00:01Z", "2024-06-15T10:00:01Z")]
    assert time_order(items, "created_at") == (True, "2024-06-15T10:00:02.000000Z", "2024-06-15T10:00:01.000000Z")
    assert time_order(list(reversed(items)), "created_at")[0] is False
    assert time_order([{"x": 1}], "created_at") == (None, None, None)
