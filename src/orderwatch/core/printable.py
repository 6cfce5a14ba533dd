"""Untrusted text made fit to show: nothing in it can act on a terminal or disguise itself. Pure.

Text from an orders API or the database (ids, states, error messages) may carry escape sequences (``ESC[2J``, OSC 8
links, OSC 0 titles), C1 controls, carriage returns that overwrite a line, bidirectional overrides that reorder it,
zero-width characters, and lone surrogates that make printing fail. ``printable`` shows each such character as a
Python-style escape (``\\x1b``, ``\\r``, ``\\u202e``) and leaves all other text as it is. ``printable_block`` does the
same but keeps line breaks and tabs, for multi-line text such as a notification body. ``json_printable`` escapes the
same characters in JSON text, where they can only stand inside strings, so the JSON means exactly what it did.

Markup (rich's ``[link=…]``, Slack's ``<!channel>``) is not this module's concern: callers pass text to rich as
``Text`` and to apprise as plain text.
"""

from __future__ import annotations

import re
from typing import Final

# C0, DEL and C1 controls; the Arabic letter mark, zero-width space, left-to-right/right-to-left marks, line and
# paragraph separators, bidirectional embeddings, overrides and isolates, the word joiner and invisible operators,
# the byte order mark; lone surrogates. Zero-width (non-)joiners are kept: emoji and several scripts need them.
_SHOWN_ESCAPED: Final = "\x00-\x1f\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff"
_UNSAFE: Final = re.compile(f"[{_SHOWN_ESCAPED}]")
_UNSAFE_IN_BLOCK: Final = re.compile(f"(?![\n\t])[{_SHOWN_ESCAPED}]")
_UNESCAPED_BY_JSON: Final = re.compile("[\x7f-\x9f\u061c\u200b\u200e\u200f\u2028-\u202e\u2060-\u2069\ufeff]")
_SHORT: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    short = _SHORT.get(char)
    if short is not None:
        return short
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(text: str) -> str:
    """``text`` on one line with every control, bidirectional or invisible character shown as an escape."""
    return _UNSAFE.sub(_escape, text)


def printable_block(text: str) -> str:
    """``text`` with the same characters shown as escapes, except line breaks (``\\r\\n`` becomes one) and tabs."""
    return _UNSAFE_IN_BLOCK.sub(_escape, text.replace("\r\n", "\n"))


def json_printable(json_text: str) -> str:
    """JSON text with DEL, C1 and bidirectional/invisible characters written as ``\\uXXXX`` escapes (the same
    value; JSON encoders already escape C0 controls)."""
    return _UNESCAPED_BY_JSON.sub(lambda m: f"\\u{ord(m.group()):04x}", json_text)
