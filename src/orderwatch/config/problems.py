"""Configuration problems: collecting them, one line each, naming the key and the value (never a secret).

pydantic reports a model's errors in its own terms; ``Problems`` translates each into ``KEY.PATH: message, got
VALUE``, with "did you mean" for unknown keys and ``<secret>`` in place of anything secret (tokens, channel URLs,
values from the environment or a token file, which are ``Tainted``). A validator raises ``Problem`` (or several
through ``raise_all``) to say exactly what is wrong and where below its key.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, TypeAlias, TypeVar

from pydantic import BaseModel, ValidationError

Loc: TypeAlias = tuple[str | int, ...]
_PLAIN_RE: Final = re.compile(r"[A-Za-z0-9_-]+")
INPUT: Final[Any] = object()  # show pydantic's input value
NONE: Final[Any] = object()  # show no value
_PLAIN_KEYS: Final = {("quiet",), ("timezone",), ("days",)}  # a channel's keys that hold no secret


class Tainted(str):
    """A string holding a value from the environment or a secret file: never shown in a message."""

    __slots__ = ()


class Problem(ValueError):
    """One problem found by a validator: ``at`` extends the key path, ``value`` is what to show after "got"."""

    def __init__(self, message: str, *, at: Loc = (), value: Any = INPUT, more: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message, self.at, self.value, self.more = message, at, value, tuple(more)


def raise_all(found: list[Problem]) -> None:
    """Raise every problem an after-validator found (pydantic takes one exception; it carries the rest)."""
    if found:
        raise Problem(found[0].message, at=found[0].at, value=found[0].value, more=found[1:])


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1)
    return f' (did you mean "{close[0]}"?)' if close else ""


def quoted(names: Iterable[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def dotted(loc: Loc) -> str:
    """``("rules", 0, "to")`` → ``rules[0].to``; odd keys are quoted."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            text = part if _PLAIN_RE.fullmatch(part) else json.dumps(part, ensure_ascii=False)
            out += f".{text}" if out else text
    return out


def is_secret(loc: Loc, value: Any) -> bool:
    """True for tokens, channel URLs, URLs with a password, and anything that came from the environment."""
    if "token" in loc or (loc[:1] == ("channels",) and "digest_over" not in loc and loc[2:3] not in _PLAIN_KEYS):
        return True
    if isinstance(value, str):
        return isinstance(value, Tainted) or re.search(r"://[^/]*@", value) is not None
    if isinstance(value, Mapping):
        return any(is_secret(loc, v) for v in value.values())
    if isinstance(value, list | tuple):
        return any(is_secret(loc, v) for v in value)
    return False


def show(loc: Loc, value: Any) -> str:
    if is_secret(loc, value):
        return "<secret>"
    text = json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 80 else text[:76] + "...."


_EXPECTED: Final = {"string": "a string", "int": "a whole number", "float": "a number", "bool": "true or false"}
_EXPECTED.update(list="a list", tuple="a list", dict="a table", mapping="a table", model="a table")
_M = TypeVar("_M", bound=BaseModel)


class Problems:
    """Collects problem lines; a key whose value could not be expanded gets no further problems."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._silenced: list[Loc] = []

    def add(self, loc: Loc, message: str, value: Any = NONE) -> None:
        """Record ``KEY.PATH: message[, got VALUE]`` unless ``loc`` is silenced."""
        if any(loc[: len(s)] == s for s in self._silenced):
            return
        shown = "" if value is NONE else f", got {show(loc, value)}"
        self.lines.append(f"{dotted(loc)}: {message}{shown}")

    def silence(self, loc: Loc) -> None:
        """Report nothing more about ``loc`` or the keys under it."""
        self._silenced.append(loc)

    def validate(
        self,
        model: type[_M],
        data: Mapping[str, Any],
        loc: Loc,
        context: Mapping[str, Any] | None = None,
        known: Iterable[str] | None = None,
    ) -> _M | None:
        """``model`` built from ``data``; on failure, one line per pydantic error and None."""
        try:
            return model.model_validate(data, context=context)
        except ValidationError as err:
            self.report(loc, err, model, known)
            return None

    def report(
        self, loc: Loc, err: ValidationError, model: type[BaseModel], known: Iterable[str] | None = None
    ) -> None:
        """One line per error in ``err``; ``known`` (default: the model's keys) feeds "did you mean"."""
        keys = list(known) if known is not None else [f.alias or n for n, f in model.model_fields.items()]
        for error in err.errors():
            self._translate(loc, error, keys)

    def _translate(self, loc: Loc, error: Any, keys: list[str]) -> None:
        kind, ctx, where = error["type"], error.get("ctx", {}), (*loc, *error["loc"])
        if kind == "missing":
            return self.add(where, "required key is missing")
        if "too_short" in kind and len(error["input"]) >= ctx["min_length"]:
            return None  # pydantic's echo of a bad item, already reported
        if kind == "extra_forbidden":
            return self.add(where, "unknown key" + did_you_mean(str(where[-1]), keys))
        if kind == "value_error" and isinstance(ctx.get("error"), Problem):
            for found in (ctx["error"], *ctx["error"].more):
                value = error["input"] if found.value is INPUT else found.value
                self.add((*where, *found.at), found.message, value)
            return None
        expected = _EXPECTED.get(kind.split("_")[0])
        message = error["msg"][:1].lower() + error["msg"][1:]
        if expected and (kind.endswith("_type") or kind == "int_from_float"):
            message = f"expected {expected}"
        elif kind in {"too_short", "string_too_short"}:
            message = "must not be empty"
        elif kind == "literal_error":
            message = "expected " + ctx["expected"].replace("'", '"')
        elif kind in {"greater_than_equal", "less_than_equal"}:
            message = f"must be at {'least' if 'ge' in ctx else 'most'} {ctx.get('ge', ctx.get('le'))}"
        return self.add(where, message, NONE if "too_short" in kind else error["input"])
