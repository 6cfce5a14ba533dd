"""Dotted paths into nested JSON objects (``"meta.page.total"``); ``""`` is the object itself."""

from __future__ import annotations

from typing import Any


def get_path(obj: Any, path: str) -> Any:
    """The value at ``path`` in ``obj``, or None when a step is missing or not an object."""
    for part in path.split(".") if path else ():
        if not isinstance(obj, dict):
            return None
        obj = obj.get(part)
    return obj


def put_path(obj: dict[str, Any], path: str, value: Any) -> None:
    """Set ``path`` in ``obj`` to ``value``, creating the objects on the way (a non-object in the way is replaced)."""
    if not path:
        raise ValueError("cannot put a value at the empty path")
    *parents, last = path.split(".")
    for part in parents:
        child = obj.get(part)
        if not isinstance(child, dict):
            child = obj[part] = {}
        obj = child
    obj[last] = value
