"""Which hosts are loopback: the one answer the sources, the metrics listener and the config share."""

from __future__ import annotations

import pytest

from orderwatch.core.hosts import is_loopback


@pytest.mark.parametrize("host", ["localhost", "LocalHost", "127.0.0.1", "127.8.9.10", "::1", "[::1]", " ::1 "])
def test_loopback_hosts(host: str) -> None:
    """localhost, 127.0.0.0/8 and ::1 (bracketed or not) are loopback."""
    assert is_loopback(host)


@pytest.mark.parametrize("host", [None, "", "0.0.0.0", "::", "10.0.0.1", "128.0.0.1", "localhost.example.com", "[::2]"])
def test_other_hosts(host: str | None) -> None:
    """Anything else — no host, the wildcard addresses, another address, a name that merely starts so — is not."""
    assert not is_loopback(host)
