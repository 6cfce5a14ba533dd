"""The template sandbox: Jinja2's immutable sandbox with a time and a size limit on every render. Pure but for the
monotonic clock of a render's deadline.

A render runs under a ``Budget``: a deadline (``RENDER_SECONDS`` by default) and a size (``MAX_TEXT`` characters) that
neither its output nor any value it builds may exceed; all it outputs, into ``{% set %}`` blocks and macros too, may
not exceed ``OUTPUT_FACTOR`` times that. A template that goes over either raises ``TemplateLimitError``
(the renderer then uses its default text). The checks sit where a template can spend time or memory:

- the deadline: at every step of every ``for`` loop (the compiler wraps each loop's iterable), every call (macros
  included, so recursion too), filter, arithmetic operator, ``~`` and output chunk;
- sizes before the operation, for those that can build much more than they are given: ``*``, ``**``, ``%`` and
  ``str.format`` (field widths), ``~``, joining and padding (``join``, ``center``, ``ljust``, ``indent``,
  ``wordwrap``, ``batch``, ``replace``…), ``range`` (at most ``MAX_ITEMS``); then the size of every value a call,
  filter or operator returns and of every value output (strings count their characters, containers their items plus
  their contents); integers are held to ``MAX_INT_BITS``.

So no single step can take long or allocate much, and the steps are counted against the deadline. Calls are
allowed to macros, loop and cycler helpers, the template globals and a list of string and mapping methods only;
anything else is a ``SecurityError``. Lists and dicts cannot be changed in place (``ImmutableSandboxedEnvironment``).
"""

from __future__ import annotations

import functools
import re
import types
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, Final

from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.runtime import BlockReference, LoopContext, Macro, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment, SandboxedFormatter
from jinja2.utils import Cycler, Joiner, Namespace

from orderwatch import clock

RENDER_SECONDS: Final = 1.0
MAX_TEXT: Final = 64 * 1024
MAX_ITEMS: Final = 100_000
MAX_INT_BITS: Final = 64 * 1024
OUTPUT_FACTOR: Final = 4

# fmt: off
_STR_METHODS: Final = frozenset({
    "capitalize", "casefold", "center", "count", "endswith", "find", "index", "isalnum", "isalpha", "isdecimal",
    "isdigit", "islower", "isnumeric", "isspace", "istitle", "isupper", "join", "ljust", "lower", "lstrip",
    "partition", "removeprefix", "removesuffix", "replace", "rfind", "rindex", "rjust", "rpartition", "rsplit",
    "rstrip", "split", "splitlines", "startswith", "strip", "swapcase", "title", "upper", "zfill",
})
# fmt: on
_MAPPING_METHODS: Final = frozenset({"get", "items", "keys", "values"})
_SEQUENCE_METHODS: Final = frozenset({"count", "index"})
_PADDING: Final = frozenset({"center", "ljust", "rjust", "zfill"})
_PERCENT_SPEC: Final = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")
_NUMBER: Final = re.compile(r"\d+")


class TemplateLimitError(TemplateRuntimeError):
    """A template ran past its deadline or built a value over its size limit."""


@dataclass(slots=True)
class Budget:
    """What one render may spend: until ``deadline`` (``clock.monotonic()``), values up to ``max_text`` in size, and
    ``OUTPUT_FACTOR`` times that in all it outputs (into blocks and macros too); ``output`` is what it has so far."""

    deadline: float
    max_text: int
    seconds: float
    output: int = 0

    @classmethod
    def start(cls, seconds: float = RENDER_SECONDS, max_text: int = MAX_TEXT) -> Budget:
        """A budget of ``seconds`` from now."""
        return cls(clock.monotonic() + seconds, max_text, seconds)

    def spend(self, size: int) -> None:
        """Count ``size`` more characters of output; raise ``TemplateLimitError`` past the output volume."""
        self.output += size
        if self.output > OUTPUT_FACTOR * self.max_text:
            raise TemplateLimitError(f"output more than {OUTPUT_FACTOR * self.max_text} characters in all")

    def check(self) -> None:
        """Raise ``TemplateLimitError`` once the deadline has passed."""
        if clock.monotonic() > self.deadline:
            raise TemplateLimitError(f"still running after {self.seconds:g} s (the time limit)")

    def fits(self, size: int, what: str) -> None:
        """Raise ``TemplateLimitError`` when ``size`` is over the size limit."""
        if size > self.max_text:
            raise TemplateLimitError(f"{what} would be over the size limit of {self.max_text} characters")


_BUDGET: ContextVar[Budget | None] = ContextVar("orderwatch_template_budget", default=None)


def _budget() -> Budget:
    """The budget of the render in progress (a render always has one; compile-time folding has none and so falls
    back to evaluating at render time)."""
    budget = _BUDGET.get()
    if budget is None:
        raise TemplateLimitError("a template ran outside render()")
    return budget


def size_of(value: Any, limit: int) -> int:
    """The size of ``value``: characters of a string, items plus contents of a container, 1 for anything else;
    counting stops once it passes ``limit``."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str | bytes):
            total += len(item)
        elif isinstance(item, Mapping):
            total += len(item)
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list | tuple | set | frozenset):
            total += len(item)
            stack.extend(item)
        else:
            total += 1
        if total > limit:
            return total
    return total


def _check_value(value: Any, budget: Budget, what: str) -> None:
    """The size limit on a value a template built."""
    if isinstance(value, int):
        if value.bit_length() > MAX_INT_BITS:
            raise TemplateLimitError(f"{what} would be an integer of over {MAX_INT_BITS} bits")
        return
    budget.fits(size_of(value, budget.max_text), what)


def _percent_size(fmt: str, values: Any, budget: Budget) -> int:
    """An upper bound of the size of ``fmt % values``; a ``*`` width is refused."""
    widest = 0
    for width, precision in _PERCENT_SPEC.findall(fmt):
        if "*" in (width, precision):
            raise TemplateLimitError("a '*' width in %-formatting is not allowed in templates")
        widest = max(widest, int(width or 0), int(precision or 0))
    return len(fmt) + fmt.count("%") * (size_of(values, budget.max_text) + widest)


def _binop_size(operator: str, left: Any, right: Any, budget: Budget) -> None:
    """Refuse an operation whose result would be over the limits, before it is computed."""
    limit = budget.max_text
    if operator == "*":
        if isinstance(left, int) and isinstance(right, int):
            if left.bit_length() + right.bit_length() > MAX_INT_BITS:
                raise TemplateLimitError(f"the product would be an integer of over {MAX_INT_BITS} bits")
            return
        seq, times = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(times, int) and isinstance(seq, str | list | tuple):
            budget.fits(size_of(seq, limit) * max(times, 0), "a repeated value")
    elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
        if left.bit_length() * right > MAX_INT_BITS:
            raise TemplateLimitError(f"the power would be an integer of over {MAX_INT_BITS} bits")
    elif operator == "+" and isinstance(left, str | list | tuple):
        budget.fits(size_of(left, limit) + size_of(right, limit), "a sum")
    elif operator == "%" and isinstance(left, str):
        budget.fits(_percent_size(left, right, budget), "a %-formatted text")


def _materialized(values: Any, budget: Budget) -> Any:
    """``values`` as a list when it is an iterator (so its size can be known), counting each item against the
    deadline and ``MAX_ITEMS``; a container as it is."""
    if isinstance(values, str | bytes | Mapping | list | tuple | set | frozenset | range):
        return values
    items = []
    for item in values:
        budget.check()
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise TemplateLimitError(f"more than {MAX_ITEMS} items")
    return items


def _joined_size(separator: str, values: Any, budget: Budget) -> int:
    """An upper bound of the size of ``values`` (a container) joined with ``separator``."""
    total = len(separator) * max(len(values) - 1, 0)
    for item in values:
        total += len(str(item)) if isinstance(item, int) else size_of(item, budget.max_text)
        if total > budget.max_text:
            break
    return total


def _replaced_size(text: str, old: str, new: str, count: int | None = None) -> int:
    hits = text.count(old) if old else len(text) + 1
    if count is not None and count >= 0:
        hits = min(hits, count)
    return len(text) + hits * max(len(new) - len(old), 0)


def _width(value: Any) -> int:
    return value if isinstance(value, int) else 0


def _filter_args(name: str, args: list[Any], kwargs: dict[str, Any], budget: Budget) -> None:
    """Refuse a filter call that would build a value over the limits (``args[0]`` is the filtered value); an
    iterator to be joined is turned into a list in ``args`` first."""

    def arg(index: int, key: str, default: Any = None) -> Any:
        return args[index] if len(args) > index else kwargs.get(key, default)

    value = args[0] if args else None
    if name in {"center", "batch", "slice"}:
        budget.fits(_width(arg(1, {"center": "width", "batch": "linecount", "slice": "slices"}[name])), name)
    elif name == "indent":
        width, text = arg(1, "width", 4), str(value)
        pad = width if isinstance(width, int) else len(str(width))
        budget.fits(len(text) + (text.count("\n") + 1) * pad, "an indented text")
    elif name == "wordwrap":
        text, width, wrap = str(value), arg(1, "width", 79), arg(3, "wrapstring") or "\n"
        lines = len(text) // max(_width(width), 1) + text.count("\n") + 1
        budget.fits(len(text) + lines * len(str(wrap)), "a wrapped text")
    elif name == "replace":
        text, old, new, count = str(value), str(arg(1, "old", "")), str(arg(2, "new", "")), arg(3, "count")
        budget.fits(_replaced_size(text, old, new, count if isinstance(count, int) else None), "a replaced text")
    elif name == "format":
        budget.fits(_percent_size(str(value), kwargs or tuple(args[1:]), budget), "a formatted text")
    elif name == "join":
        args[0] = _materialized(value, budget)
        budget.fits(_joined_size(str(arg(1, "d", "")), args[0], budget), "a joined text")


def _call_args(obj: Any, args: tuple[Any, ...], budget: Budget) -> tuple[Any, ...]:
    """Refuse a string method call that would build a text over the size limit; the arguments to pass."""
    owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
    if not isinstance(owner, str):
        return args
    if name in _PADDING and args:
        budget.fits(_width(args[0]), f"str.{name}()")
    elif name == "replace" and len(args) >= 2:
        count = args[2] if len(args) > 2 and isinstance(args[2], int) else None
        budget.fits(_replaced_size(owner, str(args[0]), str(args[1]), count), "str.replace()")
    elif name == "join" and args:
        joined = _materialized(args[0], budget)
        budget.fits(_joined_size(owner, joined, budget), "str.join()")
        return (joined, *args[1:])
    return args


def _checked_range(*args: int) -> range:
    """``range``, of at most ``MAX_ITEMS`` numbers."""
    numbers = range(*args)
    if len(numbers) > MAX_ITEMS:
        raise TemplateLimitError(f"range() of more than {MAX_ITEMS} numbers")
    return numbers


def _guarded_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` with the deadline and size checks around it (its ``pass_context``-style marker kept)."""
    skip = 1 if getattr(func, "jinja_pass_arg", None) is not None else 0

    @functools.wraps(func)
    def guarded(*args: Any, **kwargs: Any) -> Any:
        budget = _budget()
        budget.check()
        given = list(args)
        if len(given) > skip:
            rest = given[skip:]
            _filter_args(name, rest, kwargs, budget)
            given[skip:] = rest
        result = func(*given, **kwargs)
        _check_value(result, budget, f"the result of |{name}")
        return result

    return guarded


class _LimitedFormatter(SandboxedFormatter):
    """``str.format`` in templates: field widths and the whole text held to the size limit."""

    def __init__(self, env: ImmutableSandboxedEnvironment, budget: Budget) -> None:
        super().__init__(env)
        self.budget = budget
        self.total = 0

    def format_field(self, value: Any, format_spec: str) -> Any:
        """One field, its width checked before and the text so far after."""
        self.budget.check()
        for number in _NUMBER.findall(format_spec):
            self.budget.fits(int(number), "a format width")
        shown = super().format_field(value, format_spec)
        self.total += len(shown)
        self.budget.fits(self.total, "a formatted text")
        return shown


class _LimitedCodeGenerator(CodeGenerator):
    """Compiles each ``for`` loop's iterable through ``iterate_checked`` and ``~`` through ``concat_checked``."""

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        """A loop whose every step counts against the deadline."""
        checked = nodes.EnvironmentAttribute("iterate_checked", lineno=node.lineno)
        node.iter = nodes.Call(checked, [node.iter], [], None, None, lineno=node.lineno)
        super().visit_For(node, frame)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        """``a ~ b``, the size of the result checked first."""
        self.write("environment.concat_checked((")
        for arg in node.nodes:
            self.visit(arg, frame)
            self.write(", ")
        self.write("))")


class LimitedEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every user template is compiled in (see the module docstring)."""

    code_generator_class = _LimitedCodeGenerator
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(finalize=self._finalize, **options)
        self.globals["range"] = _checked_range
        self.globals.pop("lipsum", None)
        self.filters = {name: _guarded_filter(name, func) for name, func in self.filters.items()}
        self._callable_globals = {id(v) for v in self.globals.values() if callable(v)}

    @staticmethod
    def _finalize(value: Any) -> Any:
        budget = _budget()
        budget.check()
        _check_value(value, budget, "an output value")
        budget.spend(size_of(value, budget.max_text))
        return value

    def iterate_checked(self, iterable: Iterable[Any]) -> Iterator[Any]:
        """The items of ``iterable``, the deadline checked before each."""
        budget = _budget()
        for item in iterable:
            budget.check()
            yield item

    def concat_checked(self, parts: Iterable[Any]) -> str:
        """``~``: the parts as text, joined once their total size is known to fit."""
        budget = _budget()
        budget.check()
        texts = [str(p) for p in parts]
        budget.fits(sum(map(len, texts)), "a ~ concatenation")
        return "".join(texts)

    def concat(self, parts: Iterable[str]) -> str:
        """The text of a macro, ``{% set %}`` block or filter block, once its size is known to fit."""
        texts = parts if isinstance(parts, list) else list(parts)
        budget = _BUDGET.get()
        if budget is not None:
            budget.fits(sum(map(len, texts)), "a block's text")
        return "".join(texts)

    def is_safe_callable(self, obj: Any) -> bool:
        """Only macros, loop and cycler helpers, the globals, and a list of string and mapping methods."""
        if isinstance(obj, Macro | Undefined | LoopContext | BlockReference | Cycler | Joiner):
            return True
        if id(obj) in self._callable_globals or getattr(obj, "_orderwatch_format", False):
            return True
        if getattr(obj, "__func__", None) is LimitedEnvironment.iterate_checked:
            return getattr(obj, "__self__", None) is self
        owner, name = getattr(obj, "__self__", None), getattr(obj, "__name__", "")
        if isinstance(owner, str):
            return name in _STR_METHODS
        if isinstance(owner, Mapping) and not isinstance(owner, Namespace):
            return name in _MAPPING_METHODS
        if isinstance(owner, list | tuple):
            return name in _SEQUENCE_METHODS
        return isinstance(owner, LoopContext | Cycler) and not name.startswith("_")

    def call(__self, __context: Any, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        """A call from a template: the deadline, the callable, its arguments and its result checked."""
        budget = _budget()
        budget.check()
        if not __self.is_safe_callable(__obj):
            name = getattr(__obj, "__name__", type(__obj).__name__)
            raise SecurityError(f"{name}() cannot be called in an orderwatch template")
        args = _call_args(__obj, args, budget)
        result = __context.call(__obj, *args, **kwargs)
        _check_value(result, budget, "a call's result")
        return result

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        """An arithmetic operator: the deadline and the result's size checked before it is computed."""
        budget = _budget()
        budget.check()
        _binop_size(operator, left, right, budget)
        result = self.binop_table[operator](left, right)
        _check_value(result, budget, f"the result of {operator!r}")
        return result

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``str.format`` and ``str.format_map`` of a string, through the size-limited formatter."""
        if not isinstance(value, types.MethodType | types.BuiltinMethodType) or value.__name__ not in {
            "format",
            "format_map",
        }:
            return None
        text = value.__self__
        if not isinstance(text, str):
            return None
        is_map = value.__name__ == "format_map"

        def formatted(*args: Any, **kwargs: Any) -> str:
            if is_map:
                if kwargs or len(args) != 1:
                    raise TypeError("format_map() takes exactly one argument")
                kwargs, args = args[0], ()
            return str(_LimitedFormatter(self, _budget()).vformat(text, args, kwargs))

        formatted._orderwatch_format = True  # type: ignore[attr-defined]
        return functools.update_wrapper(formatted, value)


def render(template: Any, context: Mapping[str, Any], budget: Budget) -> str:
    """``template`` (compiled in a ``LimitedEnvironment``) rendered with ``context`` under ``budget``: its output
    streamed, the deadline and the size checked at each chunk; ``TemplateLimitError`` when either runs out."""
    token = _BUDGET.set(budget)
    try:
        parts: list[str] = []
        size = 0
        for chunk in template.generate(context):
            budget.check()
            size += len(chunk)
            budget.fits(size, "the rendered text")
            parts.append(chunk)
        return "".join(parts)
    finally:
        _BUDGET.reset(token)
