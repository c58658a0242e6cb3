"""Turning source values into typed cells: numbers stay numbers, dates stay dates, text stays inert.

Every converter takes what JSON or CSV can hold (text, numbers, booleans, null) and returns the
Python value the writers store, or raises ``ValueError`` with a short reason. Strings that a
spreadsheet would run as a formula are neutralised with a leading apostrophe, as OWASP advises
for CSV injection (reliability-security.md §7.6).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, date, datetime
from typing import Any

from offload.contracts.reports import Column

#: First characters that make Excel, LibreOffice or Google Sheets read a cell as a formula.
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r", "\n", "\uff1d", "\uff0b", "\uff0d", "\uff20")
#: The same, as a set of first characters: ``text[:1] in FIRST_CHARACTERS`` is the fast test.
FIRST_CHARACTERS = frozenset(FORMULA_TRIGGERS)
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})

Cell = str | int | float | bool | date | datetime | None
Converter = Callable[[Any], Cell]


def neutralise(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _text(value: Any) -> Cell:
    if type(value) is str:  # the hot path: one type check and one prefix test per cell
        return "'" + value if value[:1] in FIRST_CHARACTERS else value
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    return neutralise(str(value))


def _plain_text(value: Any) -> Cell:
    if value is None or type(value) is str:
        return value
    return _text(value)


def _integer(value: Any) -> Cell:
    if type(value) is int or value is None:
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if "_" in text:  # Python reads 1_000; a report source means something else
            raise ValueError("not an integer")
        return int(text)
    raise ValueError("not an integer")


def _number(value: Any) -> Cell:
    if type(value) is float or type(value) is int or value is None:
        if type(value) is float and not math.isfinite(value):
            raise ValueError("not a finite number")
        return value
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        number = float(text)
        if "_" in text or not math.isfinite(number):
            raise ValueError("not a finite number")
        return number
    raise ValueError("not a number")


def _boolean(value: Any) -> Cell:
    if isinstance(value, bool) or value is None:
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    if not text:
        return None
    raise ValueError("not true or false")


def _date(value: Any) -> Cell:
    if type(value) is str and len(value) == 10:  # the hot path: YYYY-MM-DD
        return date.fromisoformat(value)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("not an ISO date")
    text = value.strip()
    return datetime.fromisoformat(text).date() if len(text) > 10 else date.fromisoformat(text)


def _datetime(value: Any) -> Cell:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError("not an ISO date-time")
    moment = datetime.fromisoformat(value.strip())
    if moment.tzinfo is not None:  # spreadsheets have no time zones: store UTC
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


_CONVERTERS: dict[str, Converter] = {
    "integer": _integer,
    "number": _number,
    "boolean": _boolean,
    "date": _date,
    "datetime": _datetime,
}


def converter(column: Column, *, spreadsheet: bool) -> Converter:
    """The converter of ``column``; ``spreadsheet`` (CSV, XLSX) neutralises formula triggers in text."""
    if column.type == "string":
        return _text if spreadsheet else _plain_text
    return _CONVERTERS[column.type]


RowConverter = Callable[[dict[str, Any]], list[Cell]]


def row_converter(columns: list[Column], *, spreadsheet: bool, iso_dates: bool = False) -> RowConverter:
    """One function that turns a row object into its typed cells, in column order.

    It is generated as straight-line code, as ``dataclasses`` generates ``__init__``, with the
    common case of each type inline (a text that needs no apostrophe, an ``int``, a finite
    ``float``: ``x - x == 0`` is false only for infinities and NaN, a ``YYYY-MM-DD`` date) and the converter called for
    everything else. A report converts every cell of up to a million rows; the generic loop over
    (converter, name) pairs cost half as much again as the CSV module's own writing. Column names
    only appear as string literals (``repr``), so no name can inject code.

    ``iso_dates`` (CSV) keeps a valid ``YYYY-MM-DD`` text as it is, once checked, since the file
    would hold that same text: writing a ``date`` object would only cost its ``str()``.

    Raises:
        ValueError, TypeError: from a converter, for a value its column cannot hold.
    """
    namespace: dict[str, Any] = {"T": FIRST_CHARACTERS, "D": date.fromisoformat}
    cells = []
    for i, column in enumerate(columns):
        namespace[f"c{i}"] = converter(column, spreadsheet=spreadsheet)
        v, get, call = f"v{i}", f"get({column.name!r})", f"c{i}(v{i})"
        if column.type == "string" and spreadsheet:
            cells.append(f"({v} if type({v} := {get}) is str and {v}[:1] not in T else {call})")
        elif column.type == "string":
            cells.append(f"({v} if type({v} := {get}) is str else {call})")
        elif column.type == "integer":
            cells.append(f"({v} if type({v} := {get}) is int else {call})")
        elif column.type == "number":
            cells.append(f"({v} if (type({v} := {get}) is float and {v} - {v} == 0.0) or type({v}) is int else {call})")
        elif column.type == "date" and iso_dates:
            cells.append(f"({v} if type({v} := {get}) is str and len({v}) == 10 and D({v}) else {call})")
        elif column.type == "date":
            cells.append(f"(D({v}) if type({v} := {get}) is str and len({v}) == 10 else {call})")
        else:
            cells.append(f"c{i}({get})")
    exec(f"def convert(row):\n    get = row.get\n    return [{', '.join(cells)}]\n", namespace)
    function: RowConverter = namespace["convert"]
    return function
