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
_TRUE = frozenset({"true", "1", "yes", "y", "t"})
_FALSE = frozenset({"false", "0", "no", "n", "f"})

Cell = str | int | float | bool | date | datetime | None
Converter = Callable[[Any], Cell]


def neutralise(text: str) -> str:
    """``text`` with a leading apostrophe when a spreadsheet would read it as a formula."""
    return "'" + text if text.startswith(FORMULA_TRIGGERS) else text


def _text(value: Any) -> Cell:
    if value is None:
        return None
    if type(value) is str:
        return neutralise(value) if value.startswith(FORMULA_TRIGGERS) else value
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


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
