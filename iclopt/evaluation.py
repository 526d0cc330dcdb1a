"""Scoring prompts with an LLM: the evaluator, the budget and the persistent cache.

Every optimizer, baseline and attribution method spends its life in
:meth:`Evaluator.evaluate`; it batches all queries of a prompt into one LLM call (so the
backend can reuse the shared prefix), answers what it can from the on-disk cache, and
charges the rest to a :class:`Budget`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from iclopt.data import Example, Task
from iclopt.errors import BudgetExhausted, InputDataError
from iclopt.llms.base import LLM
from iclopt.metrics import get_metric
from iclopt.paths import default_cache_path
from iclopt.prompts import Prompt, Template
from iclopt.store import SQLiteStore

__all__ = [
    "CACHE_FORMAT",
    "Budget",
    "Cost",
    "Evaluation",
    "Evaluator",
    "ResultCache",
    "open_result_cache",
]

logger = logging.getLogger(__name__)

#: Version of what a cached answer means (stop/EOS handling, label continuations, ...).
#: Part of every cache key: bumping it invalidates every earlier answer.
CACHE_FORMAT = 2

_WARNED: set[tuple[Any, ...]] = set()  # long-answer warnings already given (once per task)

#: ``"auto"`` or the name of a registered scorer (:data:`iclopt.scoring.SCORERS`).
Scoring = str


@dataclass
class Cost:
    """What some work cost. ``llm_calls`` and ``prompt_tokens`` count cache misses only.

    A budget counts every call a piece of work needs, cached or not (:attr:`calls`,
    :attr:`tokens`): a method run on a warm cache gets nothing for free.

    Attributes:
        evaluations: Prompt evaluations (one prompt scored on one query set).
        llm_calls: Prompts sent to the LLM (label scoring sends one per label).
        prompt_tokens: Tokens of those prompts, as an API would bill them.
        cache_hits: Answers taken from the cache instead of the LLM.
        cached_tokens: Prompt tokens of those cached answers (what they would have cost).
        queries: Queries scored (a query costs one call per label under label scoring).
        seconds: Wall time.
        retries: Requests an API backend had to retry (rate limits, server errors,
            timeouts, dropped connections) before they succeeded.
    """

    evaluations: int = 0
    llm_calls: int = 0
    prompt_tokens: int = 0
    cache_hits: int = 0
    cached_tokens: int = 0
    seconds: float = 0.0
    retries: int = 0
    queries: int = 0

    @property
    def calls(self) -> int:
        """LLM calls needed, cached or not (what budgets and comparisons count)."""
        return self.llm_calls + self.cache_hits

    @property
    def tokens(self) -> int:
        """Prompt tokens needed, cached or not."""
        return self.prompt_tokens + self.cached_tokens

    def __iadd__(self, other: Cost) -> Cost:
        self.evaluations += other.evaluations
        self.queries += other.queries
        self.llm_calls += other.llm_calls
        self.prompt_tokens += other.prompt_tokens
        self.cache_hits += other.cache_hits
        self.cached_tokens += other.cached_tokens
        self.seconds += other.seconds
        self.retries += other.retries
        return self

    def as_dict(self) -> dict[str, Any]:
        """JSON form."""
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


class Budget:
    """A hard cap on evaluations, LLM calls and prompt tokens; ``None`` means no cap.

    :meth:`check` raises :class:`~iclopt.errors.BudgetExhausted` *before* work that
    would exceed a cap, so the cap is never overrun. Calls and tokens are counted cached
    or not (a cache hit counts as the call it replaces), so the same search spends the
    same budget on a cold and on a warm cache.

    Args:
        max_evaluations: Cap on prompt evaluations.
        max_llm_calls: Cap on LLM calls, cache hits included.
        max_prompt_tokens: Cap on prompt tokens, cached ones included.

    Example:
        >>> b = Budget(max_evaluations=2)
        >>> b.charge(Cost(evaluations=2)); b.exhausted
        True
    """

    def __init__(
        self,
        max_evaluations: int | None = None,
        max_llm_calls: int | None = None,
        max_prompt_tokens: int | None = None,
    ) -> None:
        for name, value in (
            ("max_evaluations", max_evaluations),
            ("max_llm_calls", max_llm_calls),
            ("max_prompt_tokens", max_prompt_tokens),
        ):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise InputDataError(
                    f"The {name!r} parameter of Budget must be an int in [1, inf) or None. "
                    f"Got {value!r} instead."
                )
        self.max_evaluations = max_evaluations
        self.max_llm_calls = max_llm_calls
        self.max_prompt_tokens = max_prompt_tokens
        self.spent = Cost()

    def check(self, *, evaluations: int = 0, llm_calls: int = 0, prompt_tokens: int = 0) -> None:
        """Raise :class:`BudgetExhausted` if spending this much would exceed a cap."""
        for what, extra, spent, cap in (
            ("evaluations", evaluations, self.spent.evaluations, self.max_evaluations),
            ("LLM calls", llm_calls, self.spent.calls, self.max_llm_calls),
            ("prompt tokens", prompt_tokens, self.spent.tokens, self.max_prompt_tokens),
        ):
            if cap is not None and extra > 0 and spent + extra > cap:
                raise BudgetExhausted(f"budget of {cap} {what} reached ({spent} spent)")

    def charge(self, cost: Cost) -> None:
        """Record spending."""
        self.spent += cost

    @property
    def exhausted(self) -> bool:
        """Whether no further evaluation fits."""
        try:
            self.check(evaluations=1)
        except BudgetExhausted:
            return True
        return any(
            cap is not None and spent >= cap
            for spent, cap in (
                (self.spent.calls, self.max_llm_calls),
                (self.spent.tokens, self.max_prompt_tokens),
            )
        )

    def as_dict(self) -> dict[str, Any]:
        """Caps (JSON form)."""
        return {
            "max_evaluations": self.max_evaluations,
            "max_llm_calls": self.max_llm_calls,
            "max_prompt_tokens": self.max_prompt_tokens,
        }


class ResultCache(SQLiteStore[Any]):
    """The persistent LLM result cache: key -> JSON value in SQLite.

    Keys hash :data:`CACHE_FORMAT`, the model identity (which includes a hash of the
    weights), the decoding settings and the exact prompt text, so a rerun pays nothing
    twice and a change of model, settings or answer handling never hits a stale entry.

    Args:
        path: SQLite file; parent folders are created.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        super().__init__(path, what="result cache", encode=json.dumps, decode=json.loads)

    @staticmethod
    def key(*parts: Any) -> str:
        """Stable key of JSON-serializable parts."""
        blob = json.dumps(
            [CACHE_FORMAT, *parts], sort_keys=True, ensure_ascii=False, separators=(",", ":")
        )
        return hashlib.sha256(blob.encode()).hexdigest()


def open_result_cache(
    cache: str | os.PathLike[str] | ResultCache | bool | None,
) -> ResultCache | None:
    """The result cache a ``cache`` argument of the library names.

    Args:
        cache: A :class:`ResultCache` (used as is), ``True`` (the shared cache,
            :func:`~iclopt.paths.default_cache_path`), ``False`` or ``None`` (no cache), or
            the path of an SQLite file.

    Example:
        >>> open_result_cache(False) is None
        True
    """
    if isinstance(cache, ResultCache):
        return cache
    if cache is True:
        return ResultCache(default_cache_path())
    if cache is False or cache is None:
        return None
    return ResultCache(cache)


@dataclass
class Evaluation:
    """One scoring of a prompt.

    Attributes:
        prompt: The prompt scored.
        score: Mean metric over the queries.
        per_example: Per query: ``id``, ``prediction``, ``score`` (the metric), ``signal``
            (the scorer's continuous signal) and, for label scoring, ``label_logprobs``.
        cost: What this scoring cost.
    """

    prompt: Prompt
    score: float
    per_example: list[dict[str, Any]] = field(default_factory=list)
    cost: Cost = field(default_factory=Cost)

    @property
    def signal(self) -> float | None:
        """Mean continuous signal over the queries (``None`` without one)."""
        vals = [r["signal"] for r in self.per_example if r.get("signal") is not None]
        return sum(vals) / len(vals) if vals else None


class Evaluator:
    """Scores prompts of one task with one LLM.

    Args:
        task: The task (pool for demonstrations, val/test for queries).
        llm: The model.
        template: How prompts are rendered; completion style by default.
        scoring: A scorer name (:mod:`iclopt.scoring`): ``"generate"`` (greedy decoding,
            then the task metric), ``"labels"`` (the most likely label; classification
            tasks), ``"label-prob"`` (labels, with the gold label's probability as the
            continuous signal), ``"gold-logprob"`` (generation, with the gold answer's
            likelihood as the signal); or ``"auto"``: ``"label-prob"`` when the task has a
            label set and the LLM returns log-probabilities (an API server may not), else
            ``"generate"``.
        max_new_tokens: Generation cap; ``None`` derives it from the longest answer in the
            pool (in the LLM's tokens, plus a quarter and 2 tokens of margin) and warns
            when a validation or test answer is longer than the cap.
        stop: Stop strings for generation.
        cache: A :class:`ResultCache`, or ``None`` for no caching.
        budget: Charged for every evaluation; ``None`` for no cap.

    Example:
        >>> ev = Evaluator(task, llm)  # doctest: +SKIP
        >>> ev.evaluate(Prompt(None, (0, 5, 2))).score  # doctest: +SKIP
    """

    def __init__(
        self,
        task: Task,
        llm: LLM,
        *,
        template: Template | None = None,
        scoring: Scoring = "auto",
        max_new_tokens: int | None = None,
        stop: Sequence[str] = ("\n",),
        cache: ResultCache | None = None,
        budget: Budget | None = None,
    ) -> None:
        from iclopt.scoring import SCORERS

        if not isinstance(scoring, str) or (scoring != "auto" and scoring not in SCORERS):
            raise InputDataError(
                f"The 'scoring' parameter of Evaluator must be 'auto' or one of "
                f"{', '.join(SCORERS.names())}. Got {scoring!r} instead."
            )
        style = (template or Template()).style
        if scoring == "auto":
            by_labels = bool(task.labels) and llm.scores_logprobs(style)
            said = ("no logprobs", llm.identity, task.name)
            if task.labels and not by_labels and said not in _WARNED:
                _WARNED.add(said)
                logger.warning(
                    "%s returns no log-probabilities: task %r is scored by greedy generation "
                    "and the metric, not by label likelihood",
                    llm.identity,
                    task.name,
                )
            scoring = "label-prob" if by_labels else "generate"
        self.scorer = SCORERS.get(scoring)()
        self.scorer.check(task)
        needs_logprobs = self.scorer.mode == "labels" or scoring == "gold-logprob"
        if needs_logprobs and not llm.scores_logprobs(style):
            raise InputDataError(
                f"model {llm.identity} returns no log-probabilities for {style}-style prompts; "
                "use scoring 'generate' or 'auto'"
            )
        if max_new_tokens is not None and (
            not isinstance(max_new_tokens, int) or max_new_tokens < 1
        ):
            raise InputDataError(f"max_new_tokens must be an int >= 1, got {max_new_tokens!r}")
        self.task = task
        self.llm = llm
        self.template = template or Template()
        #: How predictions are made (``"generate"`` or ``"labels"``); part of cache keys.
        self.scoring: Literal["generate", "labels"] = self.scorer.mode
        self.stop = tuple(stop)
        self.cache = cache
        self.budget = budget
        self.metric = get_metric(task.metric)
        self.max_new_tokens = (
            max_new_tokens if max_new_tokens is not None else self._default_max_new_tokens()
        )
        if self.scoring == "generate":
            self._warn_long_answers()

    def _default_max_new_tokens(self) -> int:
        """Longest pool answer in tokens, plus a quarter and 2 tokens (issue: no silent cap)."""
        if self.scoring == "labels":
            return 16  # unused by label scoring; kept in cache keys for stability
        longest = max(self.llm.count_tokens([ex.target for ex in self.task.pool]))
        return longest + longest // 4 + 2

    def _warn_long_answers(self) -> None:
        for split, examples in (("validation", self.task.val), ("test", self.task.test)):
            if not examples:
                continue
            shortest = [min(self.llm.count_tokens(list(ex.answers))) for ex in examples]
            too_long = sum(n > self.max_new_tokens for n in shortest)
            said = (id(self.task), self.task.name, split, self.max_new_tokens)
            if too_long and said not in _WARNED:
                _WARNED.add(said)
                logger.warning(
                    "%d of %d %s answers of task %r are longer than the generation cap of %d "
                    "tokens and cannot be produced; raise max_new_tokens",
                    too_long,
                    len(examples),
                    split,
                    self.task.name,
                    self.max_new_tokens,
                )

    # ------------------------------------------------------------------ rendering
    def render(self, prompt: Prompt, query: str) -> str:
        """The exact text the LLM sees for ``query``."""
        demos = [self.task.pool[i] for i in prompt.demos]
        if self.template.style == "chat":
            msgs = self.template.render_messages(prompt.instruction, demos, query)
            return self.llm.apply_chat_template(msgs)
        return self.template.render_text(prompt.instruction, demos, query)

    def label_affixes(self) -> tuple[str, str]:
        """What label scoring puts before and after a label: ``(separator, end marker)``.

        The label is scored together with what ends an answer in the demonstrations (the
        demo separator in completion style, the end-of-turn text in chat style), so that
        a label that is a token prefix of another ("1" of "10", "yes" of "yes, partly")
        is not favoured for being short.
        """
        if self.template.style == "chat":
            return "", self._chat_turn_end()
        return self.template.answer_separator, self.template.answer_end

    def _chat_turn_end(self) -> str:
        if not hasattr(self, "_turn_end"):
            mark = "\u2063LABEL\u2063"
            text = self.llm.apply_chat_template(
                [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": mark},
                    {"role": "user", "content": "q"},
                ]
            )
            after = text[text.index(mark) + len(mark) :] if mark in text else ""
            # the end-of-turn marker: up to (not including) the first line break
            self._turn_end = after.split("\n")[0]
        return self._turn_end

    def settings(self) -> dict[str, Any]:
        """Decoding settings that are part of every cache key."""
        return {
            "scoring": self.scoring,
            "max_new_tokens": self.max_new_tokens,
            "stop": list(self.stop),
            "labels": list(self.task.labels or ()),
        }

    # ------------------------------------------------------------------ calls
    def _cached_call(
        self,
        kind: str,
        rows: list[tuple[str, Any]],
        cost: Cost,
        *,
        temperature: float = 0.0,
        seed: int | None = None,
        max_new_tokens: int | None = None,
    ) -> list[Any]:
        """Answer ``rows`` from the cache, the rest from the LLM in ONE call.

        Args:
            kind: ``"generate"`` (rows are (prompt, "")), ``"score"`` (rows are
                (prompt, continuation)) or ``"sample"`` (rows are (prompt, sample index)).
            rows: What to answer; the second element is part of the cache key.
            cost: Charged with LLM calls, tokens and cache hits.
            temperature: Sampling temperature (``"sample"`` only).
            seed: Sampling seed; sampled answers are cached only under a seed.
            max_new_tokens: Overrides the evaluator's generation cap.
        """
        cap = self.max_new_tokens if max_new_tokens is None else max_new_tokens
        settings: dict[str, Any] = {}
        if kind != "score":
            settings = {**self.settings(), "max_new_tokens": cap}
        if kind == "sample":
            settings.update(temperature=temperature, seed=seed)
        use_cache = self.cache is not None and (kind != "sample" or seed is not None)
        keys = [ResultCache.key(kind, self.llm.identity, settings, p, c) for p, c in rows]
        found = self.cache.get_many(keys) if use_cache and self.cache is not None else {}
        miss = [i for i, k in enumerate(keys) if k not in found]
        hit = [i for i, k in enumerate(keys) if k in found]
        hit_tokens = sum(self.llm.count_tokens([rows[i][0] for i in hit])) if hit else 0
        prompts = [rows[i][0] for i in miss]
        tokens = sum(self.llm.count_tokens(prompts)) if miss else 0
        if self.budget is not None:  # a cache hit counts as the call it replaces
            self.budget.check(llm_calls=len(rows), prompt_tokens=tokens + hit_tokens)
        cost.cache_hits += len(hit)
        cost.cached_tokens += hit_tokens
        if miss:
            before = self.llm.counters()
            if kind == "score":
                values: list[Any] = self.llm.score(prompts, [rows[i][1] for i in miss])
            else:
                # a sampled answer is a function of its cache key alone (not of the other
                # rows of the call): each row gets its own seed, derived from its key
                row_seeds: list[int] | None = (
                    [int(keys[i][:15], 16) for i in miss] if kind == "sample" else None
                )
                values = self.llm.generate(
                    prompts,
                    max_new_tokens=cap,
                    stop=self.stop,
                    temperature=temperature,
                    seed=row_seeds if row_seeds is not None and seed is not None else seed,
                )
            after = self.llm.counters()
            if "prompt_tokens" in after:  # what the server billed (its usage)
                tokens = after["prompt_tokens"] - before.get("prompt_tokens", 0)
            cost.retries += after.get("retries", 0) - before.get("retries", 0)
            cost.llm_calls += len(miss)
            cost.prompt_tokens += tokens
            new = {keys[i]: v for i, v in zip(miss, values)}
            found.update(new)
            if use_cache and self.cache is not None:
                self.cache.put_many(new)
        return [found[k] for k in keys]

    def _score(
        self, texts: list[str], queries: Sequence[Example], cost: Cost
    ) -> list[dict[str, Any]]:
        """Answer and score each (rendered text, query) pair (through the scorer)."""
        cost.queries += len(queries)
        return self.scorer.score(self, texts, queries, cost)

    def calls_per_query(self) -> int:
        """LLM calls one query costs under this evaluator's scorer."""
        return self.scorer.calls_per_query(self.task)

    def _begin(self, prompts: Sequence[Prompt], queries: Sequence[Example]) -> None:
        for p in prompts:
            p.validate(len(self.task.pool))
        if not queries:
            raise InputDataError("nothing to evaluate: the query set is empty")
        if self.budget is not None:  # the whole evaluation fits, or nothing is spent
            self.budget.check(evaluations=1, llm_calls=len(queries) * self.calls_per_query())

    def _finish(self, cost: Cost, start: float) -> None:
        cost.seconds = time.perf_counter() - start
        if self.budget is not None:
            self.budget.charge(cost)

    def evaluate(self, prompt: Prompt, examples: Sequence[Example] | None = None) -> Evaluation:
        """Score ``prompt`` on ``examples`` (default: the validation set).

        All queries go to the LLM in one call, so the backend computes the shared
        instruction + demonstrations once.

        Raises:
            BudgetExhausted: The budget cannot pay for this evaluation; nothing was spent.
            InputDataError: The prompt's ids are not unique pool indices.
            LLMError: The LLM failed (never scored as 0).
        """
        queries = list(self.task.val if examples is None else examples)
        self._begin([prompt], queries)
        start = time.perf_counter()
        cost = Cost(evaluations=1)
        per = self._score([self.render(prompt, q.input) for q in queries], queries, cost)
        self._finish(cost, start)
        score = sum(p["score"] for p in per) / len(per)
        return Evaluation(prompt=prompt, score=score, per_example=per, cost=cost)

    def evaluate_per_query(
        self, prompts: Sequence[Prompt], examples: Sequence[Example]
    ) -> Evaluation:
        """Score per-query prompts: ``prompts[i]`` answers ``examples[i]`` (one LLM call).

        The returned evaluation's ``prompt`` is empty; each ``per_example`` row carries
        its own ``demos``. Counts as one evaluation.
        """
        if len(prompts) != len(examples):
            raise InputDataError(
                f"need one prompt per query, got {len(prompts)} prompts, {len(examples)} queries"
            )
        queries = list(examples)
        self._begin(prompts, queries)
        start = time.perf_counter()
        cost = Cost(evaluations=1)
        texts = [self.render(p, q.input) for p, q in zip(prompts, queries)]
        per = self._score(texts, queries, cost)
        for row, p in zip(per, prompts):
            row["demos"] = list(p.demos)
        self._finish(cost, start)
        score = sum(p["score"] for p in per) / len(per)
        return Evaluation(prompt=Prompt(), score=score, per_example=per, cost=cost)

    def sample(
        self,
        prompt: Prompt,
        queries: Sequence[str],
        *,
        n: int,
        temperature: float,
        seed: int | None,
    ) -> tuple[list[list[str]], Cost]:
        """``n`` sampled answers per query (each sample its own cache entry).

        Args:
            prompt: Instruction and demonstrations placed before each query.
            queries: Query inputs.
            n: Samples per query.
            temperature: Sampling temperature (> 0).
            seed: Seed of the sampling; ``None`` also disables caching of the samples.

        Returns:
            Per query, ``n`` stripped answers; and the cost.
        """
        if temperature <= 0 or n < 1:
            raise InputDataError(
                f"sampling needs temperature > 0 and n >= 1, got {temperature}, {n}"
            )
        prompt.validate(len(self.task.pool))
        return self.sample_texts(
            [self.render(prompt, q) for q in queries], n=n, temperature=temperature, seed=seed
        )

    def sample_texts(
        self,
        texts: Sequence[str],
        *,
        n: int,
        temperature: float,
        seed: int | None,
        max_new_tokens: int | None = None,
    ) -> tuple[list[list[str]], Cost]:
        """``n`` sampled continuations of each raw text, cached per sample and budgeted.

        Each sample is a function of its cache key alone (text, sample index, seed,
        temperature, settings), not of what else was in the call.

        Args:
            texts: Prompt texts, used as they are.
            n: Samples per text.
            temperature: Sampling temperature (> 0).
            seed: Seed of the sampling; ``None`` also disables caching of the samples.
            max_new_tokens: Cap for these samples; default: the evaluator's.

        Returns:
            Per text, ``n`` stripped continuations; and the cost.
        """
        if temperature <= 0 or n < 1:
            raise InputDataError(
                f"sampling needs temperature > 0 and n >= 1, got {temperature}, {n}"
            )
        start = time.perf_counter()
        cost = Cost()
        rows = [(t, i) for t in texts for i in range(n)]
        values = self._cached_call(
            "sample", rows, cost, temperature=temperature, seed=seed, max_new_tokens=max_new_tokens
        )
        self._finish(cost, start)
        answers = [str(v).strip() for v in values]
        return [answers[i * n : (i + 1) * n] for i in range(len(texts))], cost
