"""Type and range checks for request fields, shared by every request class.

Each check raises [`ValidationError`][kling_async.errors.ValidationError] naming the field and what it accepts, at
construction, so a bad value never reaches the wire (or a ``TypeError`` deep inside cattrs).
Only rules that hold for every model and provider live here; the rest are in
[`kling_async.model_rules`][kling_async.model_rules] and [`kling_async.validation`][kling_async.validation].
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar, cast
from urllib.parse import urlsplit

import attrs

from ._urls import hide_token
from .errors import ConfigurationError, ValidationError

__all__ = [
    "callback",
    "callback_repr",
    "carried",
    "check_seconds",
    "choice",
    "describe",
    "fail",
    "flag",
    "image",
    "listed",
    "nested",
    "nested_tuple",
    "number_in",
    "request_list",
    "rule_names",
    "seconds",
    "text",
    "whole_number",
]

_T = TypeVar("_T")
# str.isdigit() accepts superscripts, full-width and Arabic-Indic digits; the wire wants ASCII.
_ASCII_DIGITS = re.compile(r"[0-9]+")
_MAX_DIGITS = 6  # no field the API documents needs more; keeps int() cheap on hostile input
_SHOWN = 40


def fail(field: str, message: str) -> ValidationError:
    """The error for *field*; *message* says what is wrong and what is accepted."""
    return ValidationError(field, message)


# Type names as a JSON or CSV author knows them, since batch files reach these messages too.
_TYPE_WORDS = {
    bool: "true/false",
    int: "number",
    float: "number",
    str: "text",
    list: "list",
    tuple: "list",
    dict: "object",
    type(None): "null",
}


def describe(value: object) -> str:
    """A short, safe rendering of a bad value: its repr (cut at 40 characters) and kind."""
    shown = repr(value)
    if len(shown) > _SHOWN:
        shown = shown[: _SHOWN - 3] + "..."
    return f"{shown} ({_TYPE_WORDS.get(type(value), type(value).__name__)})"


Validator = Callable[[object, "attrs.Attribute[Any]", Any], None]


def text(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """``None`` or a string."""
    if value is not None and not isinstance(value, str):
        raise fail(attribute.name, f"must be a string, got {describe(value)}")


def callback(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """``None``, or the http(s) URL the server posts task updates to."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise fail(attribute.name, f"must be an http(s) URL, got {describe(value)}")
    try:
        parts = urlsplit(value.strip())
        usable = parts.scheme.lower() in ("http", "https") and bool(parts.hostname)
    except ValueError:  # an unclosed IPv6 bracket, a bad port
        usable = False
    if not usable:
        raise fail(attribute.name, "must be an http(s) URL with a host (the server posts to it)")


def callback_repr(value: object) -> str:
    """The repr of a ``callback_url`` field: its token hidden (reprs end up in logs)."""
    return repr(hide_token(value) if isinstance(value, str) else value)


def check_seconds(
    name: str, value: object, *, zero: bool, optional: bool = True, what: str = ""
) -> None:
    """Refuse a duration that is not a finite number of seconds (above 0, or from 0 with
    *zero*), nor ``None`` when *optional*; *what* goes after the kind (``" for each request"``).

    Raises:
        ConfigurationError: naming *name* and the value.
    """
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or value == math.inf:
        fits = False
    else:
        fits = value >= 0 if zero else value > 0  # NaN fails both
    if not fits:
        kind = "a number of seconds (0 or more)" if zero else "a positive number of seconds"
        none = " or None" if optional else ""
        raise ConfigurationError(f"{name} must be {kind}{what}{none}, got {value!r}")


def listed(items: object, what: str, *, one: str = "") -> list[Any]:
    """*items* as a list, or a clear error when one request (or no sequence) came instead.

    Args:
        items: what the caller passed where a list belongs.
        what: the start of the message, e.g. ``"submit_many takes a list of requests"``.
        one: what to say after it when a single request came (how to pass it).

    Raises:
        ConfigurationError: *items* is one attrs object (a request), a string, or not iterable.
    """
    if isinstance(items, str | bytes) or attrs.has(type(items)):
        raise ConfigurationError(f"{what}, got one {type(items).__name__}{one}")
    try:
        return list(cast("Iterable[Any]", items))
    except TypeError:
        raise ConfigurationError(f"{what}, got {type(items).__name__}") from None


def request_list(requests: object, verb: str) -> list[Any]:
    """*requests* as a list for *verb* (``"submit_many"``), or a clear error (see ``listed``)."""
    one = f": {verb}([request]), or submit(request)"
    return listed(requests, f"{verb} takes a list of requests", one=one)


def flag(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """``None``, ``True`` or ``False``; ``1`` and ``"yes"`` are refused, not guessed."""
    if value is not None and not isinstance(value, bool):
        raise fail(attribute.name, f"must be true or false, got {describe(value)}")


def choice(*allowed: str) -> Validator:
    """``None`` or one of *allowed* (exact spelling)."""
    accepted = ", ".join(repr(item) for item in allowed)

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is not None and (not isinstance(value, str) or value not in allowed):
            raise fail(attribute.name, f"must be one of {accepted}, got {describe(value)}")

    return check


def number_in(low: float, high: float, *, path: str = "") -> Validator:
    """``None`` or a finite real number in ``[low, high]`` (``True`` is not a number here).

    *path* goes before the field name in errors (``"camera_control.config."``).
    """

    def check(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
        if value is None:
            return
        field = path + attribute.name
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(field, f"must be a number from {low:g} to {high:g}, got {describe(value)}")
        if not math.isfinite(value) or not low <= value <= high:
            raise fail(field, f"must be from {low:g} to {high:g}, got {value!r}")

    return check


def whole_number(field: str, value: object, *, what: str = "a whole number such as 5") -> int:
    """An ``int`` (not ``bool``) or a string of ASCII digits, as an ``int``."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise fail(field, f"must be {what}, got {describe(value)}")
    if isinstance(value, str):
        stripped = value.strip()
        if not _ASCII_DIGITS.fullmatch(stripped) or len(stripped) > _MAX_DIGITS:
            raise fail(field, f"must be {what}, got {value!r} (ASCII digits 0-9 only)")
        return int(stripped)
    if value < 0 or value >= 10**_MAX_DIGITS:
        raise fail(field, f"must be a whole number from 0 to {10**_MAX_DIGITS - 1}, got {value}")
    return value


def seconds(field: str, value: object) -> str:
    """Whole seconds as the wire wants them: ASCII digits, normalised (``5``, ``"05"`` -> ``"5"``)."""
    return str(whole_number(field, value, what="whole seconds such as '5' or '10'"))


def image(_: object, attribute: attrs.Attribute[Any], value: object) -> None:
    """``None``, or an image URL or raw base64 text (no ``data:`` prefix)."""
    if value is None:
        return
    if not isinstance(value, str) or not value.strip():
        raise fail(
            attribute.name, f"must be an image URL or raw base64 text, got {describe(value)}"
        )
    text = value.strip()
    if text.lower().startswith("data:"):
        raise fail(attribute.name, "must be raw base64 without a 'data:...;base64,' prefix")
    scheme, separator, _ = text[:16].partition("://")
    if separator:
        if scheme.lower() not in ("http", "https"):
            raise fail(
                attribute.name, f"must be an http(s) URL or raw base64, got a {scheme}:// URL"
            )
    elif "." in text:
        # No base64 alphabet has a dot: this is a file name, which the server cannot read.
        raise fail(
            attribute.name,
            f"{text[:60]!r} looks like a file path, not a URL or base64: pass "
            "pathlib.Path(...) to image_to_video, or the file's bytes base64-encoded",
        )


def _rename(error: ValidationError, old: str, new: str) -> ValidationError:
    inner = error.field
    if inner == old or inner.startswith((old + ".", old + "[")):
        return fail(new + inner[len(old) :], error.reason)
    return fail(f"{new}.{inner}", error.reason)


def nested(cls: type[_T], field: str, value: object, *, prefix: str | None = None) -> _T:
    """*value* as a *cls*: an instance is kept, a mapping of its fields is converted.

    Errors name the field path (``camera_control.config.zoom``); unknown keys and values of any
    other type are refused with the accepted field names. *prefix* is the path the nested class
    itself uses in its errors, replaced by *field* (``multi_prompt`` -> ``multi_prompt[2]``).
    """
    if isinstance(value, cls):
        return value
    names = [item.name for item in attrs.fields(cast("Any", cls))]
    accepted = ", ".join(names)
    if not isinstance(value, Mapping):
        raise fail(
            field, f"must be a {cls.__name__} or an object with {accepted}, got {describe(value)}"
        )
    unknown = sorted(str(key) for key in value if key not in names)
    if unknown:
        raise fail(field, f"unknown field(s): {', '.join(unknown)}; accepted: {accepted}")
    required = [
        item.name
        for item in attrs.fields(cast("Any", cls))
        if item.default is attrs.NOTHING and item.name not in value
    ]
    if required:
        raise fail(field, f"missing field(s) {', '.join(required)}")
    try:
        return cls(**value)
    except ValidationError as exc:
        raise _rename(exc, prefix or field, field) from None


def nested_tuple(
    cls: type[_T], field: str, value: object, *, max_items: int | None = None
) -> tuple[_T, ...]:
    """A list or tuple of *cls* (instances or mappings), as a tuple; see ``nested``."""
    if isinstance(value, str | bytes | Mapping) or not isinstance(value, list | tuple):
        raise fail(field, f"must be a list of {cls.__name__}, got {describe(value)}")
    if max_items is not None and len(value) > max_items:
        raise fail(field, f"must hold at most {max_items} items, got {len(value)}")
    return tuple(
        nested(cls, f"{field}[{index}]", item, prefix=field) for index, item in enumerate(value)
    )


def rule_names(value: Iterable[str]) -> frozenset[str]:
    """``relax_rules`` as a frozenset of names; a lone string (a likely slip) is refused."""
    given: object = value  # typed for callers; checked for anything
    if isinstance(given, str) or not isinstance(given, set | frozenset | tuple | list):
        raise fail("relax_rules", f"must be a set of rule names, got {describe(value)}")
    for item in given:
        if not isinstance(item, str):
            raise fail("relax_rules", f"rule names are strings, got {describe(item)}")
    return frozenset(given)


def carried(source: object, target: type[Any]) -> dict[str, Any]:
    """*source*'s values of the fields *target* also has, by name: one request built from another.

    A field added to both requests is then carried over without a second list of names to keep.
    """
    names = {item.name for item in attrs.fields(cast("Any", type(source)))}
    return {
        item.name: getattr(source, item.name)
        for item in attrs.fields(cast("Any", target))
        if item.name in names
    }
