"""Whole numbers read from text someone else wrote: a query parameter, a header, a link, a setting.

``str.isdigit()`` is true for far more than ``0``-``9``: superscripts (``²``) and circled digits
(``①``), which ``int()`` then refuses with a ``ValueError``, and the digits of other scripts and
full-width ones (``١٢``, ``１０``), which ``int()`` reads. And ``int()`` refuses more than 4,300
digits. Checking with ``isdigit()`` and then converting turned such input into a 500 (issue 29,
item 5). Every number Offload parses from outside goes through :func:`whole_number` instead:
ASCII digits only, and few enough of them to be a number anybody means.
"""

from __future__ import annotations

import re

#: The most digits a number may have: 18 keeps any value below 2**63, so it also fits a Redis
#: integer, a signed 64-bit column, and every other system a number is handed on to.
MAX_DIGITS = 18

_DIGITS = re.compile(r"[0-9]+")


def whole_number(text: str | None, *, max_digits: int = MAX_DIGITS) -> int | None:
    """``text`` as a non-negative integer if it is 1 to ``max_digits`` ASCII digits, else None.

    Nothing is stripped: a sign, a space, a decimal point or any character but ``0``-``9`` makes
    the text no number.
    """
    if text is None or len(text) > max_digits or not _DIGITS.fullmatch(text):
        return None
    return int(text)
