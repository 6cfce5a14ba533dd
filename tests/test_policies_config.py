"""Config of notification policies: quiet hours, urgent rules and [[summaries]]; a bad value names key and value."""

from __future__ import annotations

from datetime import time
from decimal import Decimal
from pathlib import Path

import pytest

from orderwatch.config import load_config
from orderwatch.core.quiet import QuietHours
from orderwatch.errors import ConfigError
from tests.conftest import run_cli

BASE = """
database = "ow.db"
[sources.ace]
kind = "acedata"
base_url = "https://api.example.com"
[channels.ops]
urls = ["json://127.0.0.1:9/hook"]
"""


def write(tmp_path: Path, extra: str) -> Path:
    """A config with one source and channel "ops", plus ``extra``."""
    path = tmp_path / "orderwatch.toml"
    path.write_text(BASE + extra, encoding="utf-8")
    return path


def problems(tmp_path: Path, extra: str) -> list[str]:
    """The problem lines of the config with ``extra``."""
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, extra), environ={})
    return caught.value.problems


def test_quiet_hours_urgent_and_summaries_are_read(tmp_path: Path) -> None:
    """Every key of the policies reaches the plain config values."""
    text = BASE.replace(
        'urls = ["json://127.0.0.1:9/hook"]',
        'urls = ["json://127.0.0.1:9/hook"]\nquiet = "22:00-07:00"\ntimezone = "Europe/Berlin"\ndays = ["mon", "fri"]',
    )
    text += """
[[rules]]
name = "refunds"
to = ["Refunded"]
channels = ["ops"]
urgent = true

[[summaries]]
name = "daily"
channel = "ops"
schedule = "daily 08:00"
timezone = "Europe/Berlin"
kinds = ["transition"]
"""
    path = tmp_path / "orderwatch.toml"
    path.write_text(text, encoding="utf-8")
    conf = load_config(path, environ={})
    assert conf.channels["ops"].quiet == QuietHours(time(22), time(7), "Europe/Berlin", frozenset({0, 4}))
    assert conf.rules[0].urgent is True
    [summary] = conf.summaries
    assert (summary.name, summary.channel, summary.sources, summary.kinds) == (
        "daily",
        "ops",
        ("ace",),
        ("transition",),
    )
    assert (summary.schedule.every, summary.schedule.at, summary.schedule.zone) == ("daily", time(8), "Europe/Berlin")


@pytest.mark.parametrize(
    ("extra", "line"),
    [
        (
            '[channels.x]\nurls = ["json://h/"]\nquiet = "22-07"',
            'channels.x.quiet: expected a window like "22:00-07:00"',
        ),
        (
            '[channels.x]\nurls = ["json://h/"]\nquiet = "22:00-07:00"\ntimezone = "Mars/Base"',
            "channels.x.timezone: unknown time zone",
        ),
        (
            '[channels.x]\nurls = ["json://h/"]\nquiet = "22:00-07:00"\ndays = ["funday"]',
            'channels.x.days[0]: unknown day "funday"',
        ),
        (
            '[[summaries]]\nchannel = "ops"\nschedule = "hourly"',
            'summaries[0].schedule: expected "daily HH:MM" or "weekly DAY HH:MM"',
        ),
        ('[[summaries]]\nchannel = "nope"\nschedule = "daily 08:00"', 'summaries[0].channel: unknown channel "nope"'),
        ('[[summaries]]\nchannel = "ops"\nschedule = "daily 08:00"\nkinds = ["moved"]', "summaries[0].kinds[0]"),
        ('[[summaries]]\nchannel = "ops"\nschedule = "daily 08:00"\nevery = "day"', "summaries[0].every: unknown key"),
        ('[[rules]]\nchannels = ["ops"]\nurgent = "yes"', "rules[0].urgent: expected true or false"),
    ],
)
def test_a_bad_policy_value_names_the_key_and_the_value(tmp_path: Path, extra: str, line: str) -> None:
    """Each bad key is one problem line naming the key path (and the value when it is not secret)."""
    found = problems(tmp_path, "\n" + extra + "\n")
    assert any(p.startswith(line) for p in found), found


def test_a_bad_quiet_value_is_shown_not_hidden_as_a_secret(tmp_path: Path) -> None:
    """A channel's quiet/timezone hold no secret: the bad value is echoed (unlike its URLs)."""
    found = problems(tmp_path, '\n[channels.x]\nurls = ["json://h/"]\nquiet = "late"\n')
    assert found == ['channels.x.quiet: expected a window like "22:00-07:00", got "late"']


def test_the_cli_exits_2_on_a_bad_schedule(tmp_path: Path) -> None:
    """orderwatch check with a bad [[summaries]] schedule: exit 2, the key and the value on stderr."""
    path = write(tmp_path, '\n[[summaries]]\nchannel = "ops"\nschedule = "daily 8am"\n')
    ran = run_cli(path, "check")
    assert ran.code == 2
    assert (
        'summaries[0].schedule: expected "daily HH:MM" or "weekly DAY HH:MM" (DAY: mon … sun), got "daily 8am"'
        in ran.err
    )


def test_min_amount_needs_a_path_and_a_finite_number(tmp_path: Path) -> None:
    """min_amount without amount, or not a number, is a problem naming the key and the value."""
    rule = '\n[[rules]]\nchannels = ["ops"]\nurgent = true\n'
    assert problems(tmp_path, rule + "min_amount = 100\n") == [
        'rules[0].min_amount: needs amount: the dotted path to the order\'s amount, like amount = "price", got "100"'
    ]
    assert problems(tmp_path, rule + 'amount = "price"\nmin_amount = "nan"\n') == [
        'rules[0].min_amount: expected a number like 100 or "99.50", got "nan"'
    ]
    conf = load_config(write(tmp_path, rule + 'amount = "price"\nmin_amount = "99.50"\n'), environ={})
    assert (conf.rules[0].amount, conf.rules[0].min_amount) == ("price", Decimal("99.50"))
