"""``Secret``: a configured value that must never be shown (a token, a channel URL). Pure."""

from __future__ import annotations

from typing import Final

_SHOWN: Final = "<secret>"


class Secret:
    """A string that prints as ``<secret>``: ``str``, ``repr`` and formatting never reveal it; ``reveal()`` does.

    Equal secrets compare equal (a reloaded config with the same token is the same config)."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The value itself, for the one place that must use it (a request header, a URL handed to apprise)."""
        return self._value

    def __repr__(self) -> str:
        return _SHOWN

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return _SHOWN

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)
