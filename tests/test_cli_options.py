"""The global options --config, --database and --log-level work before the command and after it, as users type them;
given twice with different values they are a usage error, not a silent choice. Fast cases run in process with
click's CliRunner; the subprocess ones run the real CLI against the simulator."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import orjson
import pytest
from click.testing import CliRunner, Result

from orderwatch.cli import main
from orderwatch.store import Store
from tests.conftest import config_text, run_cli


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and subcommand of ``group``, as the words that name it."""
    found: list[tuple[str, ...]] = []
    for name, command in sorted(group.commands.items()):
        found.append((*prefix, name))
        if isinstance(command, click.Group):
            found += commands(command, (*prefix, name))
    return found


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    """A config (one source, never contacted) whose database exists and is empty."""
    path = tmp_path / "ow.toml"
    path.write_text(config_text("http://127.0.0.1:9", tmp_path / "ow.db", sources="ace"))
    path.chmod(0o600)
    Store.open(tmp_path / "ow.db").close()
    return path


def invoke(*args: str, env: dict[str, str] | None = None) -> Result:
    """``orderwatch ARGS`` in process."""
    return CliRunner().invoke(main, list(args), env={"ORDERWATCH_CONFIG": "", **(env or {})})


@pytest.mark.parametrize("words", commands(main), ids=" ".join)
def test_every_command_takes_the_global_options(words: tuple[str, ...]) -> None:
    """Each command's --help lists --config, --database and --log-level."""
    ran = invoke(*words, "--help")
    assert ran.exit_code == 0, ran.output
    for flag in ("--config", "--database", "--log-level"):
        assert flag in ran.output, (words, flag)


@pytest.mark.parametrize(
    "args",
    [
        ["--config", "{cfg}", "orders", "--format", "json"],
        ["orders", "--config", "{cfg}", "--format", "json"],
        ["orders", "--format", "json", "--config", "{cfg}"],
        ["--config", "{cfg}", "orders", "--config", "{cfg}", "--format", "json"],
        ["orders", "--log-level", "debug", "--config", "{cfg}", "--format", "json"],
    ],
    ids=["before", "after", "last", "twice, the same", "with --log-level"],
)
def test_config_before_or_after_the_command_is_the_same(cfg: Path, args: list[str]) -> None:
    """--config is read wherever it stands: the command runs against that config's (empty) database."""
    ran = invoke(*(a.format(cfg=cfg) for a in args))
    assert ran.exit_code == 0, ran.output
    assert orjson.loads(ran.stdout) == []


def test_database_after_the_command_overrides_the_config(cfg: Path) -> None:
    """--database after the command is used instead of the config's database."""
    other = cfg.with_name("other.db")
    ran = invoke("orders", "--config", str(cfg), "--database", str(other))
    assert ran.exit_code == 1
    assert f"no database at {other} yet" in ran.output


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--config", "a.toml", "orders", "--config", "b.toml"], "--config"),
        (["--config", "a.toml", "--config", "b.toml", "orders"], "--config"),
        (["orders", "--database", "a.db", "--database", "b.db", "--config", "{cfg}"], "--database"),
        (["--log-level", "info", "outbox", "retry", "--log-level", "debug", "--config", "{cfg}"], "--log-level"),
    ],
    ids=["before and after", "twice before", "twice after", "group and subcommand"],
)
def test_a_global_option_given_twice_differently_is_a_usage_error(cfg: Path, args: list[str], flag: str) -> None:
    """Two different values for one global option: exit 2 naming the option and both values, nothing run."""
    ran = invoke(*(a.format(cfg=cfg) for a in args))
    assert ran.exit_code == 2, ran.output
    assert f"{flag} given more than once with different values" in ran.output


def test_the_environment_names_the_config_when_no_option_does(cfg: Path) -> None:
    """Without --config, $ORDERWATCH_CONFIG is used; --config after the command wins over it."""
    assert orjson.loads(invoke("orders", "--format", "json", env={"ORDERWATCH_CONFIG": str(cfg)}).stdout) == []
    missing = cfg.with_name("absent.toml")
    ran = invoke("orders", "--config", str(missing), env={"ORDERWATCH_CONFIG": str(cfg)})
    assert ran.exit_code == 2
    assert f"config file {missing} (from --config) does not exist" in ran.output


def test_poll_with_config_after_the_command_in_a_real_process(config_file: Path) -> None:
    """`python -m orderwatch poll --config PATH` polls, like `--config PATH poll` does."""
    after = subprocess.run(
        [sys.executable, "-m", "orderwatch", "poll", "--config", str(config_file), "--format", "ndjson"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        check=False,
    )
    assert after.returncode == 0, after.stderr
    assert "baseline of 12 orders recorded" in after.stderr
    before = run_cli(config_file, "changes", "--format", "ndjson")
    assert (before.code, before.ndjson()) == (0, [])
