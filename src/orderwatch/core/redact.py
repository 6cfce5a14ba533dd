"""Finding secrets in text and masking them. Pure: a ``Redactor`` is built from the secret values and only reads text.

A secret comes back from servers and proxies in more forms than the one configured, so each is found:

- as written, anywhere in the text;
- percent-encoded (``%2F``, any mix of encoded and plain characters, either case of hex digits);
- JSON-escaped (``\\u0041``, ``\\/``), also when escaped again (JSON quoted in JSON);
- broken across lines or spaces (a wrapped error page, a folded header, a ``\\n`` escape in a JSON string);
- inside base64 (an echoed ``Authorization: Basic …`` header, a JWT's payload): a run of base64 is masked whole
  when it decodes to bytes that hold a secret.

Besides the given secrets, three shapes are masked wherever they appear: what follows ``Bearer``, the credentials
of an ``Authorization`` header, and the password of a ``scheme://user:password@`` URL.

Secrets shorter than ``MIN_LENGTH`` are ignored (they would mask ordinary words); the split, encoded and base64
forms are looked for only for secrets of ``MIN_SPREAD`` characters or more.
"""

from __future__ import annotations

import base64
import binascii
import functools
import re
from collections.abc import Callable, Iterable
from typing import Final
from urllib.parse import unquote

MASK: Final = "***"
MIN_LENGTH: Final = 4
MIN_SPREAD: Final = 8

# (a lower-case word the text must hold for the shape to be looked for, the shape, its replacement)
_SHAPES: Final[tuple[tuple[str, re.Pattern[str], str | Callable[[re.Match[str]], str]], ...]] = (
    ("bearer", re.compile(r"(?i)(bearer\s+)[^\s\"',;]+"), r"\1" + MASK),
    (
        "authorization",
        re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?)(?:(basic|bearer|digest|token)\s+)?[^\s\"',;]+"),
        lambda m: f"{m.group(1)}{m.group(2) + ' ' if m.group(2) else ''}{MASK}",
    ),
    ("@", re.compile(r"(://[^/\s:@]*:)[^@\s/]+@"), r"\1" + MASK + "@"),
)
# what may stand between two characters of a secret broken across lines (escapes maybe escaped again: JSON in JSON)
_GAP: Final = r"(?:\s|\\+[nrt])*"
_JSON_ESCAPE: Final = re.compile(r"\\+(?:u([0-9a-fA-F]{4})|(/)|[nrt])")
_BASE64_RUN: Final = re.compile(r"[A-Za-z0-9+/_-]{8,}={0,2}")
_URLSAFE: Final = str.maketrans("-_", "+/")
_TO_URLSAFE: Final = str.maketrans("+/", "-_")


def _char_forms(char: str) -> str:
    """A pattern for ``char`` as written, percent-encoded (its UTF-8 bytes) or JSON-escaped."""
    forms = [re.escape(char), "".join(f"%(?i:{b:02x})" for b in char.encode())]
    if ord(char) < 0x10000:
        forms.append(f"\\\\+u(?i:{ord(char):04x})")
    if char == "/":
        forms.append(r"\\+/")
    if char == " ":
        forms.append(r"\+")
    return "(?:" + "|".join(forms) + ")"


@functools.lru_cache(maxsize=1024)
def _spread_pattern(secret: str) -> re.Pattern[str]:
    """The pattern of ``secret`` in any of its encoded or broken-up forms."""
    return re.compile(_GAP.join(_char_forms(c) for c in secret))


def _squashed(text: str) -> str:
    """``text`` decoded (JSON escapes, then percent-encoding) and without whitespace: every form of a secret that
    ``_spread_pattern`` finds contains the secret's own squashed form here."""
    if "\\" in text:
        text = _JSON_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)) if m.group(1) else (m.group(2) or ""), text)
    if "%" in text:
        text = unquote(text)
    return "".join(text.split())


def _needles(secret: bytes) -> set[str]:
    """Text that the base64 of any bytes holding ``secret`` contains, whatever the secret's offset in them: for each
    of the three alignments, the encoding of the secret's whole 3-byte groups (standard and URL-safe alphabet)."""
    found: set[str] = set()
    for start in range(3):
        groups = (len(secret) - start) // 3
        encoded = base64.b64encode(secret[start : start + 3 * groups]).decode()
        found |= {encoded, encoded.translate(_TO_URLSAFE)}
    return found


def _decodings(run: str) -> Iterable[bytes]:
    """What a run of base64 characters decodes to, read from each of its first four characters (a run found in
    text may start anywhere in a group of four)."""
    core = run.rstrip("=").translate(_URLSAFE)
    for start in range(4):
        part = core[start:]
        part = part[: len(part) - len(part) % 4] if len(part) % 4 == 1 else part
        try:
            yield base64.b64decode(part + "=" * (-len(part) % 4), validate=True)
        except (binascii.Error, ValueError):
            continue


class Redactor:
    """Masks the given secrets, and secret-shaped fragments, in text."""

    __slots__ = ("_as_bytes", "_needles", "_plain", "_spread")

    def __init__(self, secrets: Iterable[str]) -> None:
        plain = sorted({s for s in secrets if len(s) >= MIN_LENGTH}, key=len, reverse=True)
        spread = [s for s in plain if len(s) >= MIN_SPREAD]
        self._plain = tuple(plain)
        self._spread = tuple(("".join(s.split()), s) for s in spread)
        self._as_bytes = tuple(s.encode() for s in spread)
        self._needles = tuple(sorted({n for b in self._as_bytes for n in _needles(b)}))

    def __call__(self, text: str) -> str:
        """``text`` with every secret in any of its forms, and every secret shape, replaced by ``***``."""
        for secret in self._plain:
            if secret in text:
                text = text.replace(secret, MASK)
        if self._spread:
            squashed = _squashed(text)
            for key, secret in self._spread:
                if key in squashed:
                    text = _spread_pattern(secret).sub(MASK, text)
        if any(needle in text for needle in self._needles):
            text = _BASE64_RUN.sub(self._base64, text)
        lower = text.lower()
        for word, pattern, repl in _SHAPES:
            if word in lower:
                text = pattern.sub(repl, text)
        return text

    def _base64(self, match: re.Match[str]) -> str:
        run = match.group()
        for decoded in _decodings(run):
            if any(secret in decoded for secret in self._as_bytes):
                return MASK
        return run
