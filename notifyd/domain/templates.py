"""Notification templates: Jinja2 in a sandbox, per language.

Templates are data (DBAs and org admins write them), so they run in Jinja2's SandboxedEnvironment:
no `__` attributes, no unsafe callables. A variable the sender did not give is an error naming it
(StrictUndefined), never an empty string. Only the e-mail HTML is autoescaped; in-app, push and
e-mail text are plain text and stay untouched.

A template notification inserted by SQL is held by the database (held_until = 'infinity') with
one `render_notifications` job; notifyd.domain.rendering renders it and calls notify_private.store_rendering,
which releases its real-time event and starts its deliveries, or notify_private.render_failed.
"""

from __future__ import annotations

import functools
import inspect
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

import jinja2
import jinja2.meta
import nh3
from jinja2.sandbox import SandboxedEnvironment, safe_range
from jinja2.utils import Namespace
from markupsafe import escape

CACHE_SIZE = 512

NO_TEMPLATE = 'template "{name}" does not exist in any language'
NO_LANGUAGE = 'template "{name}" has no version in {tried}'
UNDEFINED = 'template "{name}" ({language}) {field}: {error}'
UNSAFE = 'template "{name}" ({language}) {field} was refused by the sandbox: {error}'
SYNTAX = 'template "{name}" ({language}) {field} does not compile: {error}'
UNDECLARED = 'template "{name}" ({language}) {field} uses undeclared variables: {names}'
OVER_BUDGET = 'template "{name}" ({language}) {field} is over budget: {error}'
OVER_SIZE = "it renders more than {limit} bytes (TEMPLATE_MAX_OUTPUT_BYTES)"
OVER_TIME = "it takes more than {limit:g} s to render (TEMPLATE_RENDER_TIMEOUT)"
DEFAULT_MAX_OUTPUT_BYTES = 256 * 1024
DEFAULT_RENDER_TIMEOUT = 1.0

# Template column → (rendered channel, key); the in-app title and body are the notification's own columns.
FIELDS: dict[str, tuple[str, str]] = {
    "title_template": ("in_app", "title"),
    "body_template": ("in_app", "body"),
    "push_title_template": ("push", "title"),
    "push_body_template": ("push", "body"),
    "email_subject_template": ("email", "subject"),
    "email_html_template": ("email", "html"),
    "email_text_template": ("email", "text"),
}
HTML_FIELD = "email_html_template"


class TemplateError(Exception):
    """A template that cannot be used or rendered; the message says which and why."""


class BudgetError(TemplateError):
    """A template over its output-size or time budget."""


class _OverBudget(Exception):
    """Raised inside a rendering by the guards; _render_field names the template and field."""


@dataclass
class _Budget:
    max_bytes: int
    timeout: float
    deadline: float
    used: int = 0


_budget: ContextVar[_Budget | None] = ContextVar("template_budget", default=None)


def _tick() -> None:
    budget = _budget.get()
    if budget is not None and time.monotonic() > budget.deadline:
        raise _OverBudget(OVER_TIME.format(limit=budget.timeout))


def _fits(size: int) -> None:
    """Refuses, before it is built, a value that alone would exceed the output cap."""
    budget = _budget.get()
    if budget is not None and size > budget.max_bytes:
        raise _OverBudget(OVER_SIZE.format(limit=budget.max_bytes))


def _sized(value: Any) -> None:
    # A string, list or mapping longer than the cap cannot be rendered within it (N items join to >= N bytes).
    if isinstance(value, str | bytes | list | tuple | dict | set):
        _fits(len(value))


def _check_format(fmt: Any, args: Any) -> None:
    """`'%*s' % (10**8, x)`, `'%100000000s'`, `'{:>{}}'.format(x, 10**8)`: a width over the cap is refused."""
    if not isinstance(fmt, str):
        return
    for width in re.findall(r"\d+", fmt):
        _fits(int(width) if len(width) < 10 else 1 << 62)
    values = args.values() if isinstance(args, Mapping) else args if isinstance(args, tuple | list) else (args,)
    if "*" in fmt or "{" in fmt:
        for value in values:
            if isinstance(value, int) and not isinstance(value, bool):
                _fits(value)


class _BudgetedSandbox(SandboxedEnvironment):
    """The sandbox with the rendering budget checked where output can grow and on every call (macros too)."""

    intercepted_binops = frozenset({"*", "%", "**", "+"})

    def call_binop(self, context: jinja2.runtime.Context, operator: str, left: Any, right: Any) -> Any:
        _tick()
        if operator == "*":
            for seq, count in ((left, right), (right, left)):
                if isinstance(seq, str | bytes | list | tuple) and isinstance(count, int):
                    _fits(len(seq) * count)
        elif operator == "%":
            _check_format(left, right)
        elif operator == "**" and isinstance(left, int) and isinstance(right, int) and right > 0 and abs(left) > 1:
            _fits(right * abs(left).bit_length() // 8)  # bytes of the number: its decimal text is longer still
        elif operator == "+" and isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            _fits(len(left) + len(right))
        return super().call_binop(context, operator, left, right)

    def call(__self, __context: jinja2.runtime.Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:  # noqa: N805
        _tick()
        target = inspect.unwrap(__obj) if callable(__obj) else __obj
        owner = getattr(target, "__self__", None)
        if isinstance(owner, str) and getattr(target, "__name__", "") in ("format", "format_map"):
            _check_format(
                owner, (*args, *kwargs.values(), *(a for m in args if isinstance(m, Mapping) for a in m.values()))
            )
        result = super().call(__context, __obj, *args, **kwargs)
        _sized(result)
        _sized(owner)  # list.append/extend, dict.update grow their owner
        return result

    def getattr(self, obj: Any, attribute: str) -> Any:
        _tick()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _tick()
        return super().getitem(obj, argument)


class _BoundedRange(Sequence[int]):
    """Jinja2's sandboxed range (at most 100,000 items) that checks the time budget on every step."""

    def __init__(self, steps: range) -> None:
        self._steps = steps

    def __iter__(self) -> Iterator[int]:
        for step in self._steps:
            _tick()
            yield step

    def __len__(self) -> int:
        return len(self._steps)

    def __getitem__(self, index: Any) -> Any:
        item = self._steps[index]
        return _BoundedRange(item) if isinstance(item, range) else item

    def __repr__(self) -> str:
        return repr(self._steps)


def _range(*args: int) -> _BoundedRange:
    return _BoundedRange(safe_range(*args))


class _Namespace(Namespace):
    """namespace() whose attributes cannot be grown past the cap (`{% set ns.s = ns.s ~ ns.s %}` in a loop)."""

    def __setitem__(self, name: str, value: Any) -> None:
        _sized(value)
        super().__setitem__(name, value)


def _guarded(name: str, estimate: Callable[[dict[str, Any]], int]) -> Callable[..., Any]:
    """A built-in filter that first refuses an output its arguments make larger than the cap."""
    original = jinja2.filters.FILTERS[name]
    signature = inspect.signature(original)

    @functools.wraps(original)  # keeps jinja_pass_arg
    def guarded(*args: Any, **kwargs: Any) -> Any:
        _tick()
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        _fits(estimate(bound.arguments))
        return original(*args, **kwargs)

    return guarded


def _width(value: Any) -> int:
    return len(value) if isinstance(value, str) else int(value)


def _format_estimate(a: dict[str, Any]) -> int:
    _check_format(a["value"], (*a["args"], *a["kwargs"].values()))
    return 0


def _replace_estimate(a: dict[str, Any]) -> int:
    s, old, new = str(a["s"]), str(a["old"]), str(a["new"])
    count = len(s) + 1 if old == "" else s.count(old)
    return len(s) + min(count, a["count"] if a["count"] is not None else count) * len(new)


def _join_estimate(a: dict[str, Any]) -> int:
    items = a["value"]
    if not isinstance(items, Sequence):
        return 0
    return len(str(a["d"])) * max(len(items) - 1, 0) + sum(len(i) for i in items if isinstance(i, str))


_GUARDED_FILTERS = {
    "center": lambda a: max(len(str(a["value"])), int(a["width"])),
    "indent": lambda a: len(str(a["s"])) + (str(a["s"]).count("\n") + 1) * _width(a["width"]),
    "wordwrap": lambda a: len(str(a["s"])) * (1 + len(a["wrapstring"] or "\n") // max(int(a["width"]), 1) + 1),
    "format": _format_estimate,
    "replace": _replace_estimate,
    "join": _join_estimate,
}


def _sandbox(autoescape: bool) -> SandboxedEnvironment:
    env = _BudgetedSandbox(undefined=jinja2.StrictUndefined, autoescape=autoescape, keep_trailing_newline=True)
    env.globals.update(range=_range, namespace=_Namespace)
    env.filters.update({name: _guarded(name, estimate) for name, estimate in _GUARDED_FILTERS.items()})
    return env


_text = _sandbox(autoescape=False)
_html = _sandbox(autoescape=True)


@dataclass(frozen=True)
class Rendering:
    title: str
    body: str
    rendered: dict[str, dict[str, str]]


def _environment(field: str) -> SandboxedEnvironment:
    return _html if field == HTML_FIELD else _text


class CompiledTemplates:
    """Compiled templates keyed by (template row id, version, field): a new version is a new key."""

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._size = size
        self._compiled: OrderedDict[tuple[str, int, str], jinja2.Template] = OrderedDict()
        self.compilations = 0  # how often a template was actually compiled (tests watch the cache)

    def get(self, template: Mapping[str, Any], field: str) -> jinja2.Template:
        key = (str(template["id"]), int(template["version"]), field)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = compile_field(template, field)
            self.compilations += 1
            self._compiled[key] = compiled
            if len(self._compiled) > self._size:
                self._compiled.popitem(last=False)
        else:
            self._compiled.move_to_end(key)
        return compiled


def _where(template: Mapping[str, Any], field: str) -> dict[str, str]:
    return {"name": str(template["name"]), "language": str(template["language"]), "field": field}


def compile_field(template: Mapping[str, Any], field: str) -> jinja2.Template:
    try:
        return _environment(field).from_string(template[field])
    except jinja2.TemplateSyntaxError as error:
        raise TemplateError(SYNTAX.format(**_where(template, field), error=error)) from None


def check(template: Mapping[str, Any]) -> None:
    """Refuses a template that does not compile or uses a variable its `variables` do not declare."""
    declared = set(template.get("variables") or {})
    for field in FIELDS:
        source = template.get(field)
        if source is None:
            continue
        compile_field(template, field)
        used = jinja2.meta.find_undeclared_variables(_environment(field).parse(source))
        # Jinja2's own globals (range, cycler, …) are not variables the sender gives.
        undeclared = sorted(used - declared - set(_environment(field).globals))
        if undeclared:
            raise TemplateError(UNDECLARED.format(**_where(template, field), names=", ".join(undeclared)))


def choose(templates: Sequence[Mapping[str, Any]], name: str, locale: str, default_language: str) -> Mapping[str, Any]:
    """Exact locale (pt-BR), then its language (pt), then the default language; TemplateError otherwise."""
    if not templates:
        raise TemplateError(NO_TEMPLATE.format(name=name))
    by_language = {str(t["language"]).lower(): t for t in templates}
    tried = list(dict.fromkeys([locale, locale.split("-")[0], default_language]))
    for language in tried:
        if language.lower() in by_language:
            return by_language[language.lower()]
    raise TemplateError(NO_LANGUAGE.format(name=name, tried=", ".join(tried)))


def _render_field(
    cache: CompiledTemplates, template: Mapping[str, Any], field: str, variables: Mapping[str, Any]
) -> str:
    compiled = cache.get(template, field)
    budget = _budget.get()
    assert budget is not None, "render() sets the budget"
    try:
        chunks = []
        # Streamed, so that the output cap and the deadline are checked as it grows, not after.
        for chunk in compiled.generate(variables):
            budget.used += len(chunk.encode("utf-8", "surrogatepass"))
            if budget.used > budget.max_bytes:
                raise _OverBudget(OVER_SIZE.format(limit=budget.max_bytes))
            _tick()
            chunks.append(chunk)
        return "".join(chunks)
    except (_OverBudget, RecursionError) as error:
        reason = error if isinstance(error, _OverBudget) else OVER_TIME.format(limit=budget.timeout)
        raise BudgetError(OVER_BUDGET.format(**_where(template, field), error=reason)) from None
    except MemoryError:
        raise BudgetError(
            OVER_BUDGET.format(**_where(template, field), error=OVER_SIZE.format(limit=budget.max_bytes))
        ) from None
    except jinja2.UndefinedError as error:
        raise TemplateError(UNDEFINED.format(**_where(template, field), error=error.message)) from None
    except jinja2.exceptions.SecurityError as error:
        raise TemplateError(UNSAFE.format(**_where(template, field), error=error)) from None
    except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as error:
        raise TemplateError(UNDEFINED.format(**_where(template, field), error=error)) from None


def render(
    cache: CompiledTemplates,
    template: Mapping[str, Any],
    variables: Mapping[str, Any],
    max_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    timeout: float = DEFAULT_RENDER_TIMEOUT,
) -> Rendering:
    """Every channel's text; a channel without its own template shows the in-app title and body.

    All the fields together are rendered within max_bytes of output and timeout seconds (BudgetError).
    """
    token = _budget.set(_Budget(max_bytes=max_bytes, timeout=timeout, deadline=time.monotonic() + timeout))
    try:
        text = {
            FIELDS[field]: _render_field(cache, template, field, variables)
            for field in FIELDS
            if template.get(field) is not None
        }
    finally:
        _budget.reset(token)
    title = text[("in_app", "title")].strip()
    body = text[("in_app", "body")]
    rendered: dict[str, dict[str, str]] = {}
    if any(channel == "push" for channel, _ in text):
        rendered["push"] = {"title": text.get(("push", "title"), title), "body": text.get(("push", "body"), body)}
    if any(channel == "email" for channel, _ in text):
        rendered["email"] = {
            "subject": text.get(("email", "subject"), title),
            "text": text.get(("email", "text"), body),
            # The one place HTML is allowed; cleaned even so: a template is data an admin can change over REST.
            "html": nh3.clean(text.get(("email", "html"), str(escape(body)))),
        }
    return Rendering(title=title, body=body, rendered=rendered)
