"""Small example tasks written by this project, for the demo, docs and tests.

* ``sentiment``: 160 short reviews written for iclopt (80 positive, 80 negative);
  pool 100, val 20, test 40.
* ``last_item``: procedurally generated; the answer is the last item of a comma-separated
  list of 3-5 everyday nouns. Pool 100, val 20, test 50.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from importlib import resources

import numpy as np

from iclopt.data import Example, Task
from iclopt.registry import Registry

__all__ = ["TASKS", "get_task", "last_item", "sentiment"]

TASKS: Registry[Callable[[], Task]] = Registry("built-in task")

_NOUNS = (
    "apple bridge candle desk engine forest garden hammer island jacket kettle ladder "
    "mirror needle orange pencil quilt river saddle tablet umbrella violin window yacht "
    "zipper anchor basket cactus dolphin feather guitar helmet igloo jungle kitten lemon "
    "magnet notebook ocean pepper rocket spoon tiger valley wallet blanket castle drum"
).split()


@TASKS.register("sentiment")
def sentiment() -> Task:
    """Binary sentiment of short reviews (labels ``negative`` / ``positive``)."""
    text = resources.files("iclopt.datasets").joinpath("data/sentiment_reviews.jsonl")
    rows = [json.loads(line) for line in text.read_text(encoding="utf-8").splitlines() if line]
    ex = [Example(r["input"], r["output"], id=r["id"]) for r in rows]
    return Task(
        "sentiment",
        pool=ex[:100],
        val=ex[100:120],
        test=ex[120:160],
        metric="label_accuracy",
        labels=("negative", "positive"),
    )


@TASKS.register("last_item")
def last_item() -> Task:
    """Name the last item of a list of nouns (a generated string task, exact match)."""
    rng = np.random.default_rng(20261121)
    examples: list[Example] = []
    seen: set[str] = set()
    while len(examples) < 170:
        n = int(rng.integers(3, 6))
        items = [_NOUNS[i] for i in rng.choice(len(_NOUNS), size=n, replace=False)]
        text = ", ".join(items)
        if text in seen:
            continue
        seen.add(text)
        examples.append(Example(text, items[-1], id=f"l{len(examples):03d}"))
    return Task(
        "last_item",
        pool=examples[:100],
        val=examples[100:120],
        test=examples[120:170],
        metric="exact_match",
    )


def get_task(name: str) -> Task:
    """A built-in task by name.

    Raises:
        UnknownNameError: Unknown name; the message lists the built-in tasks.
    """
    return TASKS.get(name)()
