"""``text.wordcount``, a job type declared outside Offload: ``dramatiq offload_text.worker:setup``."""

from __future__ import annotations

import re
from collections import Counter

from pydantic import BaseModel, Field

from offload import JobContext, Payload, WorkerSpec, job

WORD = re.compile(r"[^\W_]+(?:['’-][^\W_]+)*")


class WordCount(Payload):
    """A text to count the words of."""

    text: str = Field(max_length=1_000_000, description="The text, at most a million characters.")
    top: int = Field(default=10, ge=0, le=100, description="How many of the most frequent words to list.")


class Frequent(BaseModel):
    """One of the most frequent words (lower-cased) and how often it occurs."""

    word: str
    count: int


class WordCountResult(BaseModel):
    """The counts of one text."""

    words: int
    lines: int
    top: list[Frequent]


@job("text.wordcount", queue="text", time_limit=60)
def wordcount(ctx: JobContext, payload: WordCount) -> WordCountResult:
    """Count the words and lines of a text, and list its most frequent words."""
    counts: Counter[str] = Counter()
    lines = payload.text.splitlines()
    for number, line in enumerate(lines, 1):
        counts.update(word.lower() for word in WORD.findall(line))
        if number % 2000 == 0:  # a long text reports progress and stops if cancelled
            ctx.raise_if_cancelled()
            ctx.progress(100 * number / len(lines), f"{number} of {len(lines)} lines")
    top = [Frequent(word=word, count=count) for word, count in counts.most_common(payload.top)]
    return WordCountResult(words=sum(counts.values()), lines=len(lines), top=top)


#: The worker: ``dramatiq offload_text.worker:setup`` consumes the ``text`` queue (and ``system``).
SPEC = WorkerSpec(name="text", jobs=(wordcount,))
setup = SPEC.setup
