"""The package's layers, checked from the code's own imports: nothing reaches up a layer, and the core stays pure."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

PACKAGE: Final = Path(__file__).resolve().parents[2] / "src" / "orderwatch"

# Each layer may import itself and the layers below it (a lower number); layers of one number are peers that do not
# import each other. The simulator stands apart: it imports only itself, and only the CLI's demo imports it.
RANK: Final = {
    "errors": 0,
    "clock": 0,
    "core": 1,
    "sources": 2,
    "store": 2,
    "config": 3,
    "sweep": 4,
    "delivery": 4,
    "service": 5,
    "cli": 6,
    "__main__": 7,
}
# What the pure core may import besides itself, errors and clock: computation, never I/O, clocks or threads.
PURE: Final = frozenset(
    {"__future__", "collections", "dataclasses", "typing", "enum", "functools", "itertools", "math", "re"}
    | {"decimal", "json", "random", "array", "bisect", "datetime", "zoneinfo", "string", "unicodedata"}
    | {"base64", "binascii", "urllib.parse", "contextvars", "types", "ipaddress"}
    | {"orjson", "xxhash", "jinja2", "markupsafe"}
)


def layer_of(path: Path) -> str:
    """The layer a module of the package belongs to (its first part below ``orderwatch``)."""
    first = path.relative_to(PACKAGE).parts[0]
    return first.removesuffix(".py")


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports (absolute names; TYPE_CHECKING and function-local imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names if node.module == "orderwatch"}
    return found


def modules() -> list[Path]:
    """Every module of the package."""
    return sorted(p for p in PACKAGE.rglob("*.py") if p.name != "__init__.py" or p.parent != PACKAGE)


def test_every_module_is_in_a_layer() -> None:
    """A new top-level module or folder must be given its place in the layering here."""
    assert {layer_of(p) for p in modules()} - {"simulator"} <= RANK.keys()


def test_no_module_imports_a_layer_above_or_beside_its_own() -> None:
    """An import runs down the layers (cli → service → sweep/delivery → config → sources/store → core → errors,
    clock), or stays inside its own layer; peers (sweep and delivery, sources and store) do not import each
    other."""
    wrong: list[str] = []
    for path in modules():
        mine = layer_of(path)
        for name in imports(path):
            parts = name.split(".")
            if parts[0] != "orderwatch" or len(parts) < 2 or parts[1] == mine:
                continue
            theirs = parts[1]
            if theirs == "__version__":
                continue
            if theirs == "simulator" or mine == "simulator":
                if not (mine == "cli" and theirs == "simulator"):
                    wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
                continue
            if RANK[theirs] >= RANK[mine]:
                wrong.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert wrong == []


def test_the_core_imports_no_io() -> None:
    """core/ imports only itself, errors, clock and pure computation: no sockets, files, threads, loggers or
    HTTP/SQL/apprise libraries."""
    impure: list[str] = []
    for path in modules():
        if layer_of(path) != "core":
            continue
        for name in imports(path):
            top = name.split(".")[0]
            allowed = (
                top in PURE
                or name in PURE
                or name.startswith(("orderwatch.core", "orderwatch.errors", "orderwatch.clock"))
            )
            if not allowed and name not in {"orderwatch"}:
                impure.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert impure == []
