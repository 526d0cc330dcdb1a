"""A new method is one class under one decorator: toys of each kind, from a plug-in module.

The module is written to a temporary folder and imported from there, as a user's plug-in
would be; the fixture unregisters its classes afterwards, so no other test sees them.
"""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from typer.testing import CliRunner

import iclopt
from iclopt.attribution import ATTRIBUTORS
from iclopt.bandits import OPTIMIZERS
from iclopt.cli import app
from iclopt.data import Task
from iclopt.datasets import get_task
from iclopt.prompts import Prompt
from iclopt.selectors import SELECTORS
from iclopt.testing import (
    FakeEmbedder,
    FakeLLM,
    check_attributor,
    check_optimizer,
    check_selector,
)

runner = CliRunner()

TOYS = '''
"""Toy methods: one class and one decorator each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from iclopt.attribution import Attribution, EvaluatorAttributor, register_attributor
from iclopt.bandits import Optimizer, SearchSpaceExhausted, register_optimizer
from iclopt.data import Example, Task
from iclopt.evaluation import Budget, Cost, ResultCache, Scoring
from iclopt.llms import LLM
from iclopt.params import Interval
from iclopt.prompts import Prompt, Template
from iclopt.selectors import Selector, register_selector


@register_optimizer("toy-swap")
class ToySwap(Optimizer):
    """Swap one demonstration of the best prompt so far for a random pool item.

    Args:
        k: Demonstrations per prompt.
        seed: RNG seed.
        instructions: Candidate instructions (the first prompt draws one).
        tries: Draws before giving up on finding a new prompt.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {"tries": [Interval(int, 1, None)]}

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
        tries: int = 100,
    ) -> None:
        super().__init__(k=k, seed=seed, instructions=instructions)
        self.tries = tries

    def suggest(self) -> Prompt:
        """A new neighbour of the best prompt (a random prompt first)."""
        self._check_setup()
        rng = self.rng_
        n = len(self.task_.pool)
        for _ in range(self.tries):
            if self.history_:
                best = max(self.history_, key=lambda h: h[1])[0]
                demos = list(best.demos)
                new = int(rng.integers(n))
                if new in demos:
                    continue
                demos[int(rng.integers(self.k))] = new
                prompt = Prompt(best.instruction, tuple(demos))
            else:
                first = tuple(int(i) for i in rng.choice(n, size=self.k, replace=False))
                instruction = self.instructions[int(rng.integers(len(self.instructions)))]
                prompt = Prompt(instruction, first)
            if prompt not in self.seen_:
                self.seen_.add(prompt)
                return prompt
        raise SearchSpaceExhausted(f"no new neighbour in {self.tries} draws")


@register_selector("toy-longest")
class ToyLongest(Selector):
    """The k pool items with the most long words, the longest last.

    Args:
        seed: Breaks ties.
        min_chars: A word counts when it has at least this many characters.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "min_chars": [Interval(int, 1, None)]
    }

    def __init__(self, *, seed: int | None = None, min_chars: int = 4) -> None:
        super().__init__(seed=seed)
        self.min_chars = min_chars

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The k items with the most words of ``min_chars`` characters, most last."""
        self._check(task, k, query)
        ties = np.random.default_rng(self.seed).random(len(task.pool))
        words = [
            sum(len(w) >= self.min_chars for w in ex.input.split()) for ex in task.pool
        ]
        order = sorted(range(len(task.pool)), key=lambda i: (words[i], ties[i]))
        return Prompt(None, tuple(order[-k:]))


@register_attributor("toy-solo")
class ToySolo(EvaluatorAttributor):
    """Each demonstration alone: its one-shot prompt's utility minus the zero-shot one's.

    Args:
        llm: The LLM.
        template: Prompt template.
        scoring: How answers are scored.
        utility: What a prompt is worth on a query.
        max_new_tokens: Generation cap.
        cache: Result cache.
        budget: Charged for every evaluation.
        scale: Multiplies every score.
    """

    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "scale": [Interval(float, 0, None, closed="neither")]
    }

    def __init__(
        self,
        *,
        llm: LLM,
        template: Template | None = None,
        scoring: Scoring = "auto",
        utility: str = "auto",
        max_new_tokens: int | None = None,
        cache: ResultCache | None = None,
        budget: Budget | None = None,
        scale: float = 1.0,
    ) -> None:
        super().__init__(
            llm=llm,
            template=template,
            scoring=scoring,
            utility=utility,
            max_new_tokens=max_new_tokens,
            cache=cache,
            budget=budget,
        )
        self.scale = scale

    def _attribute(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str] | None
    ) -> Attribution:
        qs = self._labelled(task, queries)
        evaluator = self._evaluator(task)
        kind = self._utility_kind(evaluator)
        cost = Cost()

        def value(demos: tuple[int, ...]) -> np.ndarray:
            ev = evaluator.evaluate(Prompt(prompt.instruction, demos), qs)
            cost.__iadd__(ev.cost)
            return self._per_query_values(ev.per_example, qs, kind)

        zero = value(())
        per_query = np.stack([value((d,)) - zero for d in prompt.demos]) * self.scale
        return self._result(
            task,
            prompt,
            qs,
            scores=per_query.mean(axis=1),
            per_query=per_query,
            cost=cost,
            config={"utility": kind, "scale": self.scale},
        )
'''

NAMES = ((OPTIMIZERS, "toy-swap"), (SELECTORS, "toy-longest"), (ATTRIBUTORS, "toy-solo"))

#: Ways to break each toy's contract: (what, text in TOYS, its replacement, the check's words).
BREAKS = [
    (
        "an optimizer that ignores its seed",
        "rng = self.rng_",
        "rng = np.random.default_rng(0)",
        "seeds 0 and 1 gave the same trials",
    ),
    (
        "a selector that does not check k",
        "        self._check(task, k, query)\n        ties",
        "        ties",
        "k=0 did not raise InputDataError",
    ),
    (
        "a selector whose fit skips the base's",
        "    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:\n",
        "    def fit(self, task, context=None):\n"
        "        self.task_ = task\n"
        "        return self\n\n"
        "    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:\n",
        "ToyLongest.fit: an invalid 'min_chars' did not raise",
    ),
    (
        "an attributor that checks its parameters late",
        "    def _attribute(\n",
        "    def attribute(self, task, prompt, queries=None):\n"
        "        self._check_prompt(task, prompt)\n"
        "        return self._attribute(task, prompt, queries)\n\n    def _attribute(\n",
        "ToySolo.attribute: an invalid 'utility' did not raise",
    ),
    (
        "an attributor with one score too few",
        "scores=per_query.mean(axis=1),",
        "scores=per_query.mean(axis=1)[:-1],",
        "scores for 3 demos",
    ),
]


def _load(path: Path, source: str) -> ModuleType:
    path.write_text(source, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _unregister() -> None:
    for registry, name in NAMES:
        if name in registry:
            registry.unregister(name)


@pytest.fixture()
def toys(tmp_path: Path) -> Iterator[ModuleType]:
    try:
        yield _load(tmp_path / "toy_methods.py", TOYS)
    finally:
        _unregister()


def _small() -> Task:
    t = get_task("sentiment")
    return Task(
        "small", t.pool[:30], t.val[:8], t.test[:8], metric="label_accuracy", labels=t.labels
    )


def test_one_class_and_one_decorator_register_each_kind(toys):
    for registry, name in NAMES:
        cls = registry.get(name)
        assert cls.name == name and cls.__module__ == "toy_methods"
        assert cls.description == cls.__doc__.splitlines()[0].rstrip(".")
    assert toys.ToySwap().config() == {"k": 5, "seed": None, "instructions": [None], "tries": 100}
    assert toys.ToyLongest(seed=3).config() == {"seed": 3, "min_chars": 4}


def test_the_conformance_suites_pass_the_toys(toys):
    check_optimizer(OPTIMIZERS.get("toy-swap"), _small(), k=3, budget=8)
    check_selector(SELECTORS.get("toy-longest"), _small())
    check_attributor(ATTRIBUTORS.get("toy-solo"), scale=2.0)


@pytest.mark.parametrize(("what", "old", "new", "needle"), BREAKS, ids=[b[0] for b in BREAKS])
def test_the_conformance_suites_fail_a_broken_toy(tmp_path, what, old, new, needle):
    assert TOYS.count(old) == 1, what
    try:
        _load(tmp_path / "toy_methods.py", TOYS.replace(old, new))
        with pytest.raises(AssertionError, match=needle):
            check_optimizer(OPTIMIZERS.get("toy-swap"), _small(), k=3, budget=8)
            check_selector(SELECTORS.get("toy-longest"), _small())
            check_attributor(ATTRIBUTORS.get("toy-solo"))
    finally:
        _unregister()


def test_iclopt_methods_lists_the_toys_with_their_docstring_lines(toys):
    text = runner.invoke(app, ["methods"]).stdout
    sections: dict[str, list[str]] = {}
    header = ""
    for line in text.splitlines():
        if line.startswith("  "):
            sections[header].append(line.strip())
        else:
            header = line
            sections[header] = []
    for registry, name in NAMES:
        title = {
            OPTIMIZERS: "optimize --method",
            SELECTORS: "select --method",
            ATTRIBUTORS: "attribute --method",
        }[registry]
        lines = next(body for head, body in sections.items() if head.startswith(title))
        assert [ln.split()[0] for ln in lines] == registry.names(), title
        line = next(ln for ln in lines if ln.split()[0] == name)
        assert line.endswith(registry.get(name).description), line


def test_the_public_api_and_cli_build_the_toys_by_name(toys, tmp_path, monkeypatch):
    task = _small()
    result = iclopt.optimize(
        task,
        llm=FakeLLM(),
        method="toy-swap",
        k=3,
        budget=4,
        cache=False,
        method_options={"tries": 20},
    )
    assert result.config["optimizer"]["tries"] == 20 and len(result.best.demos) == 3
    picked = iclopt.select(
        task, "toy-longest", k=3, llm=FakeLLM(), embedder=FakeEmbedder(), cache=False
    )
    assert picked == toys.ToyLongest(seed=0).fit(task).select(task, 3)
    attr = iclopt.attribute(
        task, Prompt(None, (0, 1, 2)), llm=FakeLLM(), method="toy-solo", cache=False, scale=2.0
    )
    assert attr.method == "toy-solo" and attr.config["scale"] == 2.0
    with pytest.raises(iclopt.InputDataError, match="'scale' parameter of ToySolo"):
        iclopt.attribute(task, Prompt(None, (0, 1)), llm=FakeLLM(), method="toy-solo", scale=0)

    import iclopt.cli.attribute as cli_attribute

    monkeypatch.setattr(cli_attribute, "load_llm", lambda model, **kw: FakeLLM())
    out = tmp_path / "attr"
    args = ["attribute", "--task", "sentiment", "--ids", "4,2", "--method", "toy-solo"]
    done = runner.invoke(app, [*args, "--no-cache", "--out", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads((out / "attribution.json").read_text())["method"] == "toy-solo"
