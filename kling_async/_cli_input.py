"""The ``kling-async batch`` input files: ``.txt``, ``.jsonl`` and ``.csv`` rows, read and checked whole."""

from __future__ import annotations

import base64
import csv
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from ._images import MAX_BYTES, image_problem
from .kinds import KINDS, request_problems
from .models import TaskRequest
from .validation import RequestLimits

__all__ = ["InputError", "image_field", "load_items"]

# How CSV cells become values; the request classes check the values themselves.
_BOOL_FIELDS = frozenset({"watermark", "multi_shot", "asmr_mode"})
_FLOAT_FIELDS = frozenset(
    {
        "cfg_scale",
        "image_fidelity",
        "human_fidelity",
        "up_expansion_ratio",
        "down_expansion_ratio",
        "left_expansion_ratio",
        "right_expansion_ratio",
        "sound_volume",
        "original_audio_volume",
    }
)
_JSON_FIELDS = frozenset(
    {
        "camera_control",
        "multi_prompt",
        "dynamic_masks",
        "voice_list",
        "element_list",
        "image_list",
        "subject_image_list",
        "video_list",
        "input",
        "face_choose",
        "relax_rules",
    }
)
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


class InputError(Exception):
    """An input file has bad lines; nothing may be submitted.

    Attributes:
        problems: one ``file:line: reason`` text per bad line.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


def _request_from(fields: Mapping[str, Any]) -> tuple[TaskRequest | None, list[str]]:
    """Build a request of the object's ``kind`` (default text2video); every problem, in words."""
    values = dict(fields)
    kind = values.pop("kind", "text2video")
    if not isinstance(kind, str) or kind not in KINDS:
        return None, [f"kind: must be one of {', '.join(sorted(KINDS))}, got {kind!r}"]
    request, problems = request_problems(kind, values)
    return request, [str(problem) for problem in problems]


def _csv_value(name: str, text: str) -> Any:
    if name in _BOOL_FIELDS:
        lowered = text.strip().lower()
        if lowered in _TRUE:
            return True
        if lowered in _FALSE:
            return False
        raise ValueError(f"{name}: expected true or false, got {text!r}")
    if name in _FLOAT_FIELDS:
        try:
            return float(text)
        except ValueError:
            raise ValueError(f"{name}: expected a number, got {text!r}") from None
    if name in _JSON_FIELDS:
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ValueError(f"{name}: not valid JSON ({exc})") from None
    return text


_Row = tuple[int, Mapping[str, Any], list[str]]


def _rows(path: Path, text: str) -> Iterator[_Row]:
    """``(line number, fields, problems already found)`` per non-empty input line."""
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except (ValueError, RecursionError) as exc:
                yield number, {}, [f"not valid JSON ({exc})"]
                continue
            if not isinstance(value, dict):
                yield number, {}, [f"expected a JSON object, got {type(value).__name__}"]
                continue
            yield number, value, []
    elif suffix == ".csv":
        yield from _csv_rows(text)
    else:
        for number, line in enumerate(text.splitlines(), start=1):
            if line.strip():
                yield number, {"prompt": line.strip()}, []


def _csv_rows(text: str) -> Iterator[_Row]:
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if not reader.fieldnames:
        return
    for row in reader:
        number = reader.line_num
        if None in row:
            yield number, {}, ["more cells than header columns"]
            continue
        values: dict[str, Any] = {}
        problems: list[str] = []
        for name, cell in row.items():
            if cell is None or cell == "":
                continue
            try:
                values[name] = cell if name in ("key", "kind") else _csv_value(name, cell)
            except ValueError as exc:
                problems.append(str(exc))
        if values or problems:
            yield number, values, problems


def _unreadable(name: str, problems: Sequence[str]) -> bool:
    return any(problem.startswith(f"{name}:") for problem in problems)


def load_items(path: Path, limits: RequestLimits) -> list[tuple[str, TaskRequest]]:
    """Read and validate a whole prompts file: ``.txt``, ``.jsonl`` or ``.csv``.

    * ``.txt``: one prompt per non-empty line.
    * ``.jsonl``: one object per line with the fields of its ``kind`` (default
      ``text2video``; nested fields as objects and lists) and an optional ``key``.
    * ``.csv``: a header row of field names (``key`` and ``kind`` optional); nested fields as
      JSON text.

    Every problem of every line is reported, in words about the file's own values.

    An item's key is its ``key`` or ``line-NNNN`` from its line number, so it stays the same
    when the file is read again.

    Args:
        path: the file.
        limits: the provider's request limits, checked for every line.

    Returns:
        ``(key, request)`` per item, in file order.

    Raises:
        InputError: listing ``file:line: reason`` for every bad line (or an empty file).
        OSError: the file cannot be read.
        UnicodeDecodeError: the file is not UTF-8 text.
    """
    text = path.read_text(encoding="utf-8-sig")
    items: list[tuple[str, TaskRequest]] = []
    problems: list[str] = []
    keys: dict[str, int] = {}
    for number, row, found in _rows(path, text):
        where = f"{path}:{number}"
        if found and not row:
            problems.extend(f"{where}: {problem}" for problem in found)
            continue
        fields = dict(row)
        key = fields.pop("key", None)
        if key is None:
            key = f"line-{number:04d}"
        elif not isinstance(key, str) or not key.strip():
            problems.append(f"{where}: key must be a non-empty string")
            continue
        if key in keys:
            problems.append(f"{where}: duplicate key {key!r} (first on line {keys[key]})")
            continue
        keys[key] = number
        # A cell that could not be read is left out of the request, so that every other
        # problem of the row is reported too.
        request, invalid = _request_from(
            {name: value for name, value in fields.items() if not _unreadable(name, found)}
        )
        if request is not None:
            invalid = [str(problem) for problem in limits.problems(request)]
        invalid = found + invalid
        if invalid or request is None:
            problems.extend(f"{where}: {problem}" for problem in invalid)
            continue
        items.append((key, request))
    if not items and not problems:
        problems.append(f"{path}: no prompts found")
    if problems:
        raise InputError(problems)
    return items


# -- connection options -----------------------------------------------------------------------


def image_field(value: str) -> str:
    """``--image``: an http(s) URL as given, or a local image file as base64, checked first.

    Raises:
        click.UsageError: the file cannot be read, is too big, or is not a usable JPG/PNG.
    """
    if value.startswith(("http://", "https://")):
        return value
    path = Path(value)
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise click.UsageError(
                f"--image {value}: {size / 1024 / 1024:.1f} MB; images may be at most 10 MB"
            )
        encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    except OSError as exc:
        raise click.UsageError(f"--image {value}: {exc.strerror or exc}") from None
    problem = image_problem(encoded)
    if problem is not None:
        raise click.UsageError(f"--image {value} {problem}")
    return encoded
