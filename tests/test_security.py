"""Issue 5's security checks: no secret in any output or stored byte, no bearer token over plain http to a remote
host, private database files, and a warning when a config file holding secrets is readable by others.

The secret-grep test runs every command and the daemon against the simulator and real loopback receivers (SMTP with
a password, a webhook whose path is a token) with known secrets — inline and from ``${VAR}`` — and greps everything
they wrote, the notifications they sent, and the database files.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO
from urllib.parse import quote

import pytest

from orderwatch.config import load_config
from orderwatch.core.diff import diff
from orderwatch.core.model import Observation, Order
from orderwatch.errors import ConfigError, SourceError
from orderwatch.simulator import SimServer, Simulator
from orderwatch.store import Store
from orderwatch.sweep import http, paging
from tests.conftest import ACE_TOKEN, LSKY_TOKEN, Ran, config_text, run_cli
from tests.receivers import SmtpReceiver, WebhookReceiver

SMTP_PASSWORD = "sm7p-Pa55w0rd-0f-the-b0t"
HOOK_TOKEN = "hk-9f8e7d6c5b4a39281706-path"
SECRETS = {
    "ace token (inline)": ACE_TOKEN,
    "lsky token (${VAR})": LSKY_TOKEN,
    "lsky token without its id": LSKY_TOKEN.split("|", 1)[1],
    "smtp password (${VAR})": SMTP_PASSWORD,
    "webhook path token (inline)": HOOK_TOKEN,
}
ENV = {"OW_LSKY_TOKEN": LSKY_TOKEN, "OW_SMTP_PASSWORD": SMTP_PASSWORD, "PYTHONUNBUFFERED": "1"}


def leaks(text: str | bytes) -> list[str]:
    """The names of the secrets found in ``text`` (as they are or percent-encoded)."""
    data = text.encode() if isinstance(text, str) else text
    return [name for name, value in SECRETS.items() if value.encode() in data or quote(value, safe="").encode() in data]


def secret_config(path: Path, url: str, database: Path, smtp: SmtpReceiver, hook: WebhookReceiver) -> Path:
    """Both simulated sources (ace token inline, lsky token from the environment) and two channels: e-mail whose
    password comes from the environment, a webhook whose path token is inline; every event goes to both."""
    mail = smtp.url_for_apprise().replace(quote(SMTP_PASSWORD, safe=""), "${OW_SMTP_PASSWORD}")
    assert "${OW_SMTP_PASSWORD}" in mail
    text = config_text(url, database).replace(f'token = "{LSKY_TOKEN}"', 'token = "${OW_LSKY_TOKEN}"')
    text += f"""
[delivery]
interval = "200ms"

[channels.mail]
urls = ["{mail}"]

[channels.hook]
urls = ["{hook.url_for_apprise}"]

[[rules]]
name = "everything"
events = ["appeared", "transition", "vanished"]
channels = ["mail", "hook"]
"""
    path.write_text(text)
    path.chmod(0o600)
    return path


class Daemon:
    """``python -m orderwatch run`` in a subprocess; its output collected line by line as it comes."""

    def __init__(self, config: Path, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "orderwatch", "--config", str(config), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **env, "NO_COLOR": "1"},
        )
        self.out: list[str] = []
        self._cond = threading.Condition()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(stream,), daemon=True)
            for stream in (self.proc.stdout, self.proc.stderr)
        ]
        for reader in self._readers:
            reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._cond:
                self.out.append(line)
                self._cond.notify_all()

    @property
    def text(self) -> str:
        """Everything written to stdout and stderr so far."""
        with self._cond:
            return "".join(self.out)

    def wait_for(self, what: Callable[[str], bool], timeout: float = 30) -> None:
        """Until ``what(output)`` holds; fails after ``timeout`` seconds or if the daemon exits."""
        with self._cond:
            done = self._cond.wait_for(lambda: what("".join(self.out)) or self.proc.poll() is not None, timeout)
            assert done and self.proc.poll() is None, "".join(self.out)

    def stop(self) -> int:
        """SIGTERM, then the exit code (once all output is read)."""
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=30)
        for reader in self._readers:
            reader.join(timeout=5)
        return code

    def close(self) -> None:
        """Make sure the process is gone (after a failed test too) and its pipes are closed."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for reader in self._readers:
            reader.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


def mode(path: Path) -> int:
    """The permission bits of ``path``."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def smtp() -> Iterator[SmtpReceiver]:
    """An SMTP server that accepts only the secret password."""
    with SmtpReceiver(user="bot", password=SMTP_PASSWORD) as receiver:
        yield receiver


@pytest.fixture
def hook() -> Iterator[WebhookReceiver]:
    """A webhook whose path holds a secret token."""
    with WebhookReceiver(path=f"/hooks/{HOOK_TOKEN}") as receiver:
        yield receiver


def test_no_secret_in_any_output_notification_or_database_byte(
    tmp_path: Path, sim: Simulator, server: SimServer, smtp: SmtpReceiver, hook: WebhookReceiver
) -> None:
    """No secret in any command's or the daemon's output, in the notifications sent, or in the database files."""
    db = tmp_path / "ow.db"
    cfg = secret_config(tmp_path / "ow.toml", server.url, db, smtp, hook)
    ran: dict[str, Ran] = {}

    def run(label: str, *args: str, code: int = 0, config: Path = cfg) -> Ran:
        result = run_cli(config, *args, env=ENV)
        ran[label] = result
        assert result.code == code, (label, result.out, result.err)
        return result

    run("check", "check")
    assert "OK" in run("check --connect", "check", "--connect").out
    run("check --notify", "check", "--notify")
    run("poll (baseline)", "poll")
    ace = [o["id"] for o in sim.orders("ace")]
    lsky = [o["trade_no"] for o in sim.orders("lsky")]
    sim.set_state("ace", ace[0], "Paid")
    sim.set_state("lsky", lsky[0], "cancelled")
    sim.add_lsky(1)
    run("poll", "poll", "--format", "json")
    sim.set_state("ace", ace[0], "Refunded")
    sim.delete("lsky", lsky[0])
    run("poll --log-level debug", "--log-level", "debug", "poll", "--full", "--format", "table")
    run("poll --dry-run", "poll", "--dry-run", "--format", "ndjson")
    for command in ("changes", "orders", "outbox", "status"):
        run(command, command, "--format", "json")
    run("changes table", "changes", "--format", "table")
    run("status table", "status", "--format", "table")
    run("outbox retry", "outbox", "retry")
    assert len(hook.requests) >= 4  # the test message and three polls' events
    assert len(smtp.messages) >= 4

    broken = tmp_path / "broken.toml"
    broken.write_text(
        cfg.read_text()
        .replace(f'token = "{ACE_TOKEN}"', f'tokne = "{ACE_TOKEN}"\ntoken = ["{ACE_TOKEN}"]')
        .replace("page_size = 10\n", 'page_size = "${OW_LSKY_TOKEN}"\n', 1)
        .replace('urls = ["json://', f'urls = ["nosuchscheme://bot:{SMTP_PASSWORD}@example.com/{HOOK_TOKEN}", "json://')
    )
    error = run("config error", "check", code=2, config=broken)
    assert "tokne: unknown key" in error.err and "sources.ace.token" in error.err, error.err
    assert "<secret>" in error.err

    sim.revoke("ace")
    assert "token rejected (401" in run("poll (revoked token)", "poll", code=1).err
    assert "FAILED" in run("check --connect (revoked token)", "check", "--connect", code=1).out

    # the daemon: a revoked token on one source, notifications for the other, then SIGTERM
    sent = len(hook.requests)
    daemon = Daemon(cfg, ENV)
    try:
        daemon.wait_for(lambda out: "the source rejected the token" in out and "source=images" in out)
        for path in (db, db.with_name("ow.db-wal"), db.with_name("ow.db-shm")):
            assert mode(path) == 0o600, path
        sim.set_state("lsky", lsky[1], "paid")
        hook.wait_for(sent + 1, timeout=30)
        code = daemon.stop()
    finally:
        daemon.close()
    assert code == 0, daemon.text
    assert "token rejected (401" in daemon.text

    found = {label: leaks(r.out + r.err) for label, r in ran.items()}
    found["daemon"] = leaks(daemon.text)
    found["webhook bodies"] = leaks(repr([r.body for r in hook.requests]))
    found["mail"] = leaks("".join(m.subject + m.text() for m in smtp.messages))
    for file in sorted(tmp_path.glob("ow.db*")):
        found[file.name] = leaks(file.read_bytes())
    assert {label: names for label, names in found.items() if names} == {}
    assert len(found) >= 21


def test_the_leak_check_finds_secrets() -> None:
    """The grep itself finds each secret, plain or percent-encoded, so a clean result means something."""
    for name, value in SECRETS.items():
        assert name in leaks(f"x {value} y")
        assert name in leaks(f"x {quote(value, safe='')} y".encode())
    assert leaks("nothing here") == []


# ---- plain http --------------------------------------------------------------------------------------------------


def remote_config(path: Path, base_url: str, extra: str = "", token: bool = True) -> Path:
    """One Ace source at ``base_url`` (with the test token unless ``token`` is False)."""
    auth = f'token = "{ACE_TOKEN}"\n' if token else ""
    path.write_text(
        f'database = "{(path.parent / "ow.db").as_posix()}"\n\n'
        f'[sources.ace]\nkind = "acedata"\nbase_url = "{base_url}"\n{auth}{extra}'
    )
    return path


def test_token_over_plain_http_to_a_remote_host_is_a_config_error(tmp_path: Path) -> None:
    """A bearer token with http:// to a non-loopback host fails config loading (exit 2) with the fix, token hidden."""
    cfg = remote_config(tmp_path / "remote.toml", "http://orders.example.com")
    ran = run_cli(cfg, "check")
    assert ran.code == 2
    assert (
        "sources.ace.base_url: plain http:// would send the token unencrypted; use https:// or set "
        'allow_insecure_http = true, got "http://orders.example.com"'
    ) in ran.err
    assert ACE_TOKEN not in ran.out + ran.err
    with pytest.raises(ConfigError, match="allow_insecure_http"):
        load_config(remote_config(tmp_path / "ip.toml", "http://10.1.2.3:8080"))


@pytest.mark.parametrize(
    ("base_url", "extra", "token"),
    [
        ("http://orders.example.com", "allow_insecure_http = true\n", True),
        ("https://orders.example.com", "", True),
        ("http://127.0.0.1:8080", "", True),
        ("http://localhost:8080", "", True),
        ("http://[::1]:8080", "", True),
        ("http://orders.example.com", "", False),
    ],
    ids=["allowed", "https", "ipv4-loopback", "localhost", "ipv6-loopback", "no-token"],
)
def test_plain_http_is_accepted_when_safe_or_allowed(tmp_path: Path, base_url: str, extra: str, token: bool) -> None:
    """http:// is fine to loopback hosts, without a token, or with allow_insecure_http = true."""
    conf = load_config(remote_config(tmp_path / "ok.toml", base_url, extra, token))
    http.check_transport(conf.sources["ace"])


@pytest.mark.anyio
async def test_the_http_loop_refuses_before_sending_the_token(tmp_path: Path) -> None:
    """A source config that slipped past validation still never sends its token over http:// to a remote host."""
    url = "http://orders.example.invalid"  # never resolves: a request that got out would fail with another error
    allowed = load_config(remote_config(tmp_path / "r.toml", url, "allow_insecure_http = true\n"))
    src = dataclasses.replace(allowed.sources["ace"], allow_insecure_http=False)
    refused = r"refusing to send the token over plain http:// to orders\.example\.invalid; use https:// or set"
    async with http.clients() as pool:
        client = pool.for_source(src)
        with pytest.raises(SourceError, match=refused):
            await paging.collect(client, src)
        with pytest.raises(SourceError, match=refused):
            await http.fetch_detail(client, src, "x", http.Tally(), 0.0)


# ---- files --------------------------------------------------------------------------------------------------------


def test_database_and_its_wal_files_are_private_whatever_the_umask(tmp_path: Path) -> None:
    """The database, its -wal and its -shm are mode 0600 even under umask 022."""
    path = tmp_path / "state" / "ow.db"
    before = os.umask(0o022)
    try:
        store = Store.open(path)
        try:
            order = Order.build("a", "Paid", "Paid", {"id": "a", "state": "Paid"})
            change = diff(
                {}, Observation("ace", {"a": order}, complete=True, consistent=True), baselined=False, now="t"
            )
            store.record("ace", change, [], now="2026-01-01T00:00:00.000000Z", full=True)
            files = [path, path.with_name("ow.db-wal"), path.with_name("ow.db-shm")]
            assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
        finally:
            store.close()
    finally:
        os.umask(before)


def test_cli_creates_a_private_database(config_file: Path) -> None:
    """`orderwatch poll` run under the default umask leaves a database only its owner can read."""
    ran = run_cli(config_file, "poll")
    assert ran.code == 0, ran.err
    files = sorted(config_file.parent.glob("ow.db*"))
    assert files and {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


def test_folders_the_cli_creates_are_private_under_umask_000(tmp_path: Path, server: SimServer) -> None:
    """`orderwatch poll` run under umask 000 creates the database's missing folders 0700 and the database 0600."""
    cfg = tmp_path / "ow.toml"
    cfg.write_text(config_text(server.url, tmp_path / "state" / "deep" / "ow.db", sources="ace"))
    cfg.chmod(0o600)
    proc = subprocess.run(
        [sys.executable, "-m", "orderwatch", "--config", str(cfg), "poll"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "NO_COLOR": "1"},
        umask=0,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    state = tmp_path / "state"
    assert {p.name: mode(p) for p in (state, state / "deep")} == {"state": 0o700, "deep": 0o700}
    files = sorted((state / "deep").glob("ow.db*"))
    assert files and {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}


WARNING = "readable by others"


@pytest.mark.parametrize(
    ("how", "file_mode", "warned"),
    [
        ("inline token", 0o644, True),
        ("inline token", 0o640, True),
        ("inline channel password", 0o644, True),
        ("inline token", 0o600, False),
        ("token from ${VAR}", 0o644, False),
    ],
)
def test_warning_when_a_config_with_inline_secrets_is_readable_by_others(
    tmp_path: Path, server: SimServer, how: str, file_mode: int, warned: bool
) -> None:
    """A config readable by others warns (file, chmod 600) only when it holds a secret inline."""
    cfg = tmp_path / "ow.toml"
    text = config_text(server.url, tmp_path / "ow.db", sources="ace")
    if how == "token from ${VAR}":
        text = text.replace(f'token = "{ACE_TOKEN}"', 'token = "${OW_ACE_TOKEN}"')
    if how == "inline channel password":
        text = text.replace(f'token = "{ACE_TOKEN}"', 'token = "${OW_ACE_TOKEN}"')
        text += (
            '[channels.mail]\nurls = ["mailto://bot:s3cretPa55@127.0.0.1:2525?to=a@example.com&from=ow@example.com"]\n'
        )
    cfg.write_text(text)
    cfg.chmod(file_mode)
    ran = run_cli(cfg, "check", env={"OW_ACE_TOKEN": ACE_TOKEN})
    assert ran.code == 0, ran.err
    assert (WARNING in ran.err) is warned, ran.err
    if warned:
        assert str(cfg) in ran.err and "chmod 600" in ran.err
    assert ACE_TOKEN not in ran.out + ran.err
