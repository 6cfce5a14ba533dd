"""Quiet hours and summary schedules (pure): windows across midnight and days, DST days in Europe/Berlin."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta

import pytest

from orderwatch.core.quiet import QuietHours, parse_days, parse_window, quiet_until
from orderwatch.core.schedule import following, latest, parse_schedule

BERLIN = "Europe/Berlin"


def utc(text: str) -> datetime:
    """An ISO time as a UTC datetime."""
    return datetime.fromisoformat(text).astimezone(UTC)


NIGHT = QuietHours(time(22), time(7), BERLIN)


@pytest.mark.parametrize(
    ("moment", "until"),
    [
        ("2026-11-23T21:59:59+01:00", None),
        ("2026-11-23T22:00:00+01:00", "2026-11-24T07:00:00+01:00"),
        ("2026-11-23T23:00:00+01:00", "2026-11-24T07:00:00+01:00"),
        ("2026-11-24T03:00:00+01:00", "2026-11-24T07:00:00+01:00"),
        ("2026-11-24T07:00:00+01:00", None),
        ("2026-11-24T12:00:00+01:00", None),
    ],
)
def test_a_window_across_midnight_holds_from_its_start_to_its_end_the_next_morning(
    moment: str, until: str | None
) -> None:
    """22:00-07:00: quiet from 22:00 (inclusive) to 07:00 the next day (exclusive), in the zone's local time."""
    found = quiet_until(NIGHT, utc(moment))
    assert found == (utc(until) if until else None)


def test_days_name_the_days_a_window_starts_on() -> None:
    """days = ["fri"]: Friday 22:00 to Saturday 07:00 is quiet; Saturday night and Thursday night are not."""
    q = QuietHours(time(22), time(7), BERLIN, parse_days(["fri"]))
    assert quiet_until(q, utc("2026-11-27T23:00:00+01:00")) == utc("2026-11-28T07:00:00+01:00")  # Friday night
    assert quiet_until(q, utc("2026-11-28T03:00:00+01:00")) == utc("2026-11-28T07:00:00+01:00")  # Saturday early
    assert quiet_until(q, utc("2026-11-28T23:00:00+01:00")) is None  # Saturday night
    assert quiet_until(q, utc("2026-11-26T23:00:00+01:00")) is None  # Thursday night


def test_a_daytime_window_within_one_day() -> None:
    """12:00-13:30 is quiet at 12:45 until 13:30 and not at 13:30."""
    q = QuietHours(*parse_window("12:00-13:30"), zone="UTC")
    assert quiet_until(q, utc("2026-11-23T12:45:00+00:00")) == utc("2026-11-23T13:30:00+00:00")
    assert quiet_until(q, utc("2026-11-23T13:30:00+00:00")) is None


def test_quiet_hours_on_the_nights_clocks_change_end_at_local_seven() -> None:
    """On the nights Berlin's clocks change, the window still ends at 07:00 local time (one hour shorter or
    longer in absolute time)."""
    assert quiet_until(NIGHT, utc("2026-03-28T23:00:00+01:00")) == utc("2026-03-29T07:00:00+02:00")
    assert quiet_until(NIGHT, utc("2026-10-24T23:00:00+02:00")) == utc("2026-10-25T07:00:00+01:00")


@pytest.mark.parametrize("bad", ["22:00", "25:00-07:00", "22:00-07:60", "night", "07:00-07:00"])
def test_a_bad_window_is_refused_with_the_form_expected(bad: str) -> None:
    """A window that is not HH:MM-HH:MM on a 24-hour clock, or that ends where it starts, is a ValueError."""
    with pytest.raises(ValueError, match="window"):
        parse_window(bad)


def test_unknown_day_is_refused() -> None:
    """A day that is not mon…sun names itself in the error."""
    with pytest.raises(ValueError, match='unknown day "funday"'):
        parse_days(["funday"])


@pytest.mark.parametrize(
    ("day", "fires", "covers"),
    [
        ("2026-03-29", "2026-03-29T08:00:00+02:00", ("2026-03-28T00:00:00+01:00", "2026-03-29T00:00:00+01:00")),
        ("2026-10-25", "2026-10-25T08:00:00+01:00", ("2026-10-24T00:00:00+02:00", "2026-10-25T00:00:00+02:00")),
    ],
)
def test_daily_at_eight_fires_exactly_once_on_the_days_clocks_change(
    day: str, fires: str, covers: tuple[str, str]
) -> None:
    """Stepping minute by minute through a day Berlin's clocks change, "daily 08:00" has one new period, due at
    08:00 local time, covering the day before from midnight to midnight local time."""
    s = parse_schedule("daily 08:00", BERLIN)
    t, end = utc(f"{day}T00:00:00+00:00") - timedelta(hours=3), utc(f"{day}T23:59:00+00:00")
    changes: list[tuple[str, datetime]] = []
    before = latest(s, t).name
    while t <= end:
        name = latest(s, t).name
        if name != before:
            changes.append((name, t))
            before = name
        t += timedelta(minutes=1)
    assert changes == [(day, utc(fires))]
    period = latest(s, end)
    assert (period.fires, period.start, period.end) == (utc(fires), utc(covers[0]), utc(covers[1]))
    assert following(s, utc(fires) - timedelta(seconds=1)).fires == utc(fires)


def test_weekly_fires_on_its_day_and_covers_the_week_before() -> None:
    """ "weekly mon 08:00": the period named by the Monday, covering the seven days before it."""
    s = parse_schedule("weekly mon 08:00", "UTC")
    period = latest(s, utc("2026-11-25T12:00:00+00:00"))  # a Wednesday
    assert period.name == "2026-11-23"
    assert (period.start, period.end) == (utc("2026-11-16T00:00:00+00:00"), utc("2026-11-23T00:00:00+00:00"))
    assert following(s, utc("2026-11-25T12:00:00+00:00")).name == "2026-11-30"


@pytest.mark.parametrize("bad", ["daily", "hourly 08:00", "weekly 08:00", "daily mon 08:00", "weekly funday 08:00"])
def test_a_bad_schedule_is_refused_with_the_forms_expected(bad: str) -> None:
    """A schedule that is not "daily HH:MM" or "weekly DAY HH:MM" is a ValueError naming both forms."""
    with pytest.raises(ValueError, match="daily HH:MM"):
        parse_schedule(bad)
