"""Racing over queries with an additive model of demonstrations: iclopt's default search.

Random search spends its budget scoring every prompt on the same 20 validation queries
and keeps the highest raw score, which is the luckiest one. This method spends the same
LLM calls differently:

1. **Breadth on few queries.** Random prompts, each scored on a few queries: some of the
   validation set (the least used ones, so every validation query is seen equally) and
   some labelled pool examples that are not in the prompt (leave-prompt-out queries,
   weighted less, since pool labels can be wrong).
2. **A model that pools the evidence.** Every per-query outcome (the scorer's continuous
   signal: the gold label's probability for classification) trains an additive model of
   query difficulty, demonstration effects, slot effects and a per-prompt residual
   (:class:`~iclopt.bandits.additive.AdditiveModel`), so a demonstration is judged by
   every prompt it appeared in.
3. **Thompson sampling picks what to score next**: a posterior draw ranks the best new
   prompt (an assignment of demonstrations to slots) against every prompt already seen;
   a new winner is scored on a few queries, a seen one is extended on queries it has not
   been scored on (racing: the promising get more queries). A share of the steps replaces
   the demonstration of the incumbent that the model holds most harmful (attribution-
   guided moves, as PIAST does with Shapley estimates).
4. **Successive halving over finalists** (TRIPLE, Shi et al. NeurIPS 2024; HbBoPs,
   Schneider et al. ICML 2025): the prompts with the highest posterior mean are scored on
   the validation queries they have not seen and on more pool queries, the worse half is
   dropped each round, and the final answer is the survivor with the highest posterior
   mean, which shrinks a lucky score towards what its parts predict.

Pool items that the model finds harmful with confidence are taken out of the query pool
(a mislabeled item is both a harmful demonstration and a misleading query). A pool item
that is harder as a query than nearly every validation query, over every prompt that was
scored on it, is taken as mislabeled (the model keeps answering something else than its
label: the rule of confident learning, Northcutt et al., JAIR 2021): its outcomes leave
the model, since they rank prompts the wrong way round, and no later prompt shows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np

from iclopt.bandits.additive import AdditiveModel, Posterior
from iclopt.bandits.base import Optimizer, SearchSpaceExhausted, Trial, register_optimizer
from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.params import Interval
from iclopt.prompts import Prompt

__all__ = ["RacingOptimizer"]


@register_optimizer("race")
class RacingOptimizer(Optimizer):
    """racing over queries: additive model of demos/slots, Thompson sampling, halving.

    Racing over queries, guided by an additive Thompson-sampled model of demonstrations.
    Budgets are in query scorings (``query_budget`` of :meth:`setup`, which the search
    loop derives from its call cap): every trial scores one prompt on a few queries.

    The default schedule (16 queries per trial, 40 % of the budget for the halving over 8
    finalists) won the search benchmark (``experiments/search.py``, docs/benchmarks.md)
    against the broader one it started as (8 queries, 25 %, 6 finalists): on real
    prompts a demonstration's effect depends on the rest of the prompt, so depth on the
    finalists pays more than breadth, although a purely additive synthetic task favours
    breadth. The halving gets no more than its finalists can be scored on (about 28 % of
    the default budget; the rest of its share goes to model-guided steps), so every call
    is spent. In the benchmark, scoring every finalist on every labelled query and taking
    the best would not have chosen better than the halving does (experiments/
    search_finalists.py): the choice is at the limit of what the labelled data can tell.

    Args:
        k: Demonstrations per prompt.
        seed: RNG seed; ``None`` for fresh entropy.
        instructions: Candidate instructions searched jointly.
        explore: Share of the query budget spent on random prompts first.
        final: Share spent at most on successive halving over the finalists at the end
            (less when the finalists cannot be scored on that many queries).
        chunk: Queries per trial before the final phase (half validation, half pool); a
            budget of fewer than ``6 * chunk`` queries gets smaller trials (at least 2).
        pool_queries: Use pool examples outside the prompt as extra queries.
        pool_weight: Weight of a pool query against a validation query in the model.
        replace_share: Share of the model-guided steps that replace the incumbent's most
            harmful demonstration instead of a Thompson draw.
        n_finalists: Prompts entering successive halving.
        mislabel_quantile: A pool item scored as a query at least 3 times whose ease is
            below this quantile of the validation queries' ease is taken as mislabeled
            (see the module docstring); ``None`` turns the rule off.
        prior: Prior standard deviations of the model (see
            :class:`~iclopt.bandits.additive.AdditiveModel`).

    Example:
        >>> from iclopt.datasets import get_task
        >>> opt = RacingOptimizer(k=3, seed=0)
        >>> opt.setup(get_task("sentiment"), query_budget=200)
        >>> t = opt.ask(); len(t.prompt.demos), t.info["source"]
        (3, 'explore')
    """

    #: Trials score prompts on parts of the validation set and on pool queries.
    partial_evaluations: ClassVar[bool] = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "explore": [Interval(float, 0.0, 1.0)],
        "final": [Interval(float, 0.0, 1.0)],
        "pool_weight": [Interval(float, 0.0, 1.0)],
        "replace_share": [Interval(float, 0.0, 1.0)],
        "chunk": [Interval(int, 2, None)],
        "n_finalists": [Interval(int, 1, None)],
        "mislabel_quantile": [Interval(float, 0.0, 1.0), None],
    }

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
        explore: float = 0.4,
        final: float = 0.4,
        chunk: int = 16,
        pool_queries: bool = True,
        pool_weight: float = 0.5,
        replace_share: float = 0.25,
        n_finalists: int = 8,
        mislabel_quantile: float | None = None,
        prior: dict[str, float] | None = None,
    ) -> None:
        super().__init__(k=k, seed=seed, instructions=instructions)
        self.explore = explore
        self.final = final
        self.chunk = chunk
        self.pool_queries = pool_queries
        self.pool_weight = pool_weight
        self.replace_share = replace_share
        self.n_finalists = n_finalists
        self.mislabel_quantile = mislabel_quantile
        self.prior = prior

    # ------------------------------------------------------------------ setup
    def setup(
        self, task: Task, *, budget: int | None = None, query_budget: int | None = None
    ) -> None:
        """Validate parameters, plan the phases over the query budget, reset the model."""
        # imported once here (about a second), so that no round pays for it
        import scipy.linalg
        import scipy.optimize  # noqa: F401

        super().setup(task, budget=budget, query_budget=query_budget)
        name = type(self).__name__
        if self.explore + self.final > 1.0:
            raise InputDataError(
                f"explore + final of {name} must be at most 1. "
                f"Got {self.explore} + {self.final} instead."
            )
        if not task.val:
            raise InputDataError(f"{name} needs validation queries; task {task.name!r} has none")
        total = self.query_budget_ if self.query_budget_ is not None else 60 * len(task.val)
        # a small budget gets smaller trials (at least 6 of them), down to 2 queries each
        self.chunk_ = int(max(2, min(int(self.chunk), total // 6)))
        if total < 2 * self.chunk_:
            raise InputDataError(
                f"a budget of {total} query scorings cannot fit {name}'s schedule "
                f"(it needs at least two trials of {self.chunk_} queries)"
            )
        self.total_ = int(total)
        self.n_val_ = len(task.val)
        n_pool = len(task.pool)
        self.final_budget_ = self._final_budget(n_pool)
        self.model_ = AdditiveModel(
            n_queries=self.n_val_ + n_pool,
            n_demos=n_pool,
            k=int(self.k),
            n_instructions=len(self.instructions),
            prior=self.prior,
        )
        self.spent_ = 0
        self.index_: dict[Prompt, int] = {}  # prompt -> dense index in the model
        self.scored_: dict[Prompt, set[int]] = {}  # prompt -> query columns scored
        self.val_uses_ = np.zeros(self.n_val_, dtype=np.int64)
        self.pool_uses_ = np.zeros(n_pool, dtype=np.int64)
        self.suspects_: set[int] = set()
        self.mislabeled_: set[int] = set()  # pool ids; once found, for good
        self.post_: Posterior | None = None
        self.stale_ = True
        self.finalists_: list[Prompt] = []
        self.final_round_ = 0
        self.final_queue_: list[Prompt] = []
        self.steps_ = 0

    def _final_budget(self, n_pool: int) -> int:
        """Query scorings for the halving: its share, capped at what its finalists can take.

        A prompt can be scored on at most every validation query and every pool item not
        in it. With ``n`` finalists halved until two are left and the same budget ``B``
        per round, each of the last two is scored on about ``B (n - 1) / n`` queries on
        top of its trial's; a share beyond the rounds' total ``B log2(n)`` could not be
        spent on them, so the model-guided phase gets it instead.
        """
        share = int(self.total_ * self.final)
        n = int(self.n_finalists)
        if n < 2:
            return share
        free = self.n_val_ + (n_pool - int(self.k) if self.pool_queries else 0) - self.chunk_
        rounds = int(np.ceil(np.log2(n)))
        return min(share, int(rounds * max(0, free) * n / (n - 1)))

    # ------------------------------------------------------------------ queries
    def _pick_queries(self, prompt: Prompt, n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """``n`` queries ``prompt`` has not been scored on: (val indices, pool ids).

        Validation queries first among the least used; pool queries (when enabled) fill
        the other half, never the prompt's own demonstrations or suspect items.
        """
        seen = self.scored_.get(prompt, set())
        val_free = [j for j in range(self.n_val_) if j not in seen]
        pool_free: list[int] = []
        if self.pool_queries:
            demos = set(prompt.demos)
            pool_free = [
                i
                for i in range(len(self.task_.pool))
                if i not in demos
                and i not in self.suspects_
                and i not in self.mislabeled_
                and self.n_val_ + i not in seen
            ]
        n_pool = min(len(pool_free), n // 2) if self.pool_queries else 0
        n_val = min(len(val_free), n - n_pool)
        n_pool = min(len(pool_free), n - n_val)
        jitter = self.rng_.random(self.n_val_)
        val = sorted(val_free, key=lambda j: (self.val_uses_[j], jitter[j]))[:n_val]
        pj = self.rng_.random(len(self.task_.pool))
        pool = sorted(pool_free, key=lambda i: (self.pool_uses_[i], pj[i]))[:n_pool]
        return tuple(sorted(val)), tuple(sorted(pool))

    def _trial(self, prompt: Prompt, n: int, info: dict[str, Any]) -> Trial | None:
        n = min(n, self.total_ - self.spent_)
        if n < 1:
            return None
        val, pool = self._pick_queries(prompt, n)
        if not val and not pool:
            return None
        return Trial(prompt, queries=pool, val=val, info=info)

    # ------------------------------------------------------------------ model
    def _posterior(self) -> Posterior:
        if self.post_ is None or self.stale_:
            self.post_ = self._fit()
            self.stale_ = False
            if self._find_mislabeled():
                self.post_ = self._fit()
            self._update_suspects()
        return self.post_

    def _fit(self) -> Posterior:
        return self.model_.fit(skip_queries={self.n_val_ + i for i in self.mislabeled_})

    def _find_mislabeled(self) -> bool:
        """Flag pool items far harder as queries than the validation queries; any new?"""
        if self.mislabel_quantile is None or not self.pool_queries or self.post_ is None:
            return False
        ease = self.model_.query_effects(self.post_.mean)
        val = ease[: self.n_val_][self.val_uses_ > 0]
        if len(val) < 2:
            return False
        bar = float(np.quantile(val, self.mislabel_quantile))
        cand = [
            int(i)
            for i in np.flatnonzero(self.pool_uses_ >= 3)
            if int(i) not in self.mislabeled_ and ease[self.n_val_ + i] < bar
        ]
        if not cand:
            return False
        # confidently below the bar: its ease plus one posterior sd is still under it
        sd = self.model_.query_std(self.post_, [self.n_val_ + i for i in cand])
        new = {i for i, s in zip(cand, sd) if ease[self.n_val_ + i] + s < bar}
        self.mislabeled_ |= new
        return bool(new)

    def _clean(self, prompt: Prompt) -> bool:
        return not self.mislabeled_.intersection(prompt.demos)

    def _update_suspects(self) -> None:
        """Pool items whose harm as a demonstration is confident stop serving as queries."""
        if self.post_ is None or not self.pool_queries:
            return
        eff = self.model_.demo_effects(self.post_.mean)
        sd = self.model_.demo_std(self.post_)
        self.suspects_ = {int(i) for i in np.flatnonzero(eff + 2.0 * sd < 0.0)}

    def _value(self, theta: np.ndarray, prompt: Prompt) -> float:
        ins = self.instructions.index(prompt.instruction)
        return self.model_.prompt_value(theta, prompt.demos, ins, prompt=self.index_.get(prompt))

    def _ranked(self, among: Sequence[Prompt] | None = None) -> list[Prompt]:
        """Seen prompts (or ``among``) by posterior mean, best first.

        Prompts that show a mislabeled item come after all the others.
        """
        post = self._posterior()
        cands = list(self.index_ if among is None else among)
        return sorted(cands, key=lambda p: (not self._clean(p), -self._value(post.mean, p)))

    def _best_new(self, theta: np.ndarray) -> Prompt:
        """The unseen prompt with the highest value under ``theta`` (an assignment)."""
        from scipy.optimize import linear_sum_assignment

        scores = self._allowed(self.model_.slot_scores(theta))
        ins = int(np.argmax(self.model_.instruction_effects(theta)))
        rows, cols = linear_sum_assignment(-scores)
        demos = [0] * int(self.k)
        for r, c in zip(rows, cols):
            demos[c] = int(r)
        prompt = Prompt(instruction=self.instructions[ins], demos=tuple(demos))
        if prompt not in self.index_:
            return prompt
        # the assignment is a seen prompt: the best single replacement that is new
        order = np.argsort(-scores.max(axis=1))
        for d in order:
            for s in np.argsort(scores[list(demos), range(int(self.k))]):
                cand = list(demos)
                if int(d) in cand or int(d) in self.mislabeled_:
                    continue
                cand[int(s)] = int(d)
                p = Prompt(instruction=prompt.instruction, demos=tuple(cand))
                if p not in self.index_:
                    return p
        return self._random_prompt()

    def _allowed(self, scores: np.ndarray) -> np.ndarray:
        """Slot scores with mislabeled items out of reach (while enough others are left)."""
        if self.mislabeled_ and len(self.task_.pool) - len(self.mislabeled_) >= self.k:
            scores = scores.copy()
            scores[sorted(self.mislabeled_)] = -1e9
        return scores

    def _random_prompt(self) -> Prompt:
        n = len(self.task_.pool)
        allowed: Any = n
        if self.mislabeled_ and n - len(self.mislabeled_) >= self.k:
            allowed = np.array([i for i in range(n) if i not in self.mislabeled_])
        for _ in range(1000):
            demos = tuple(int(i) for i in self.rng_.choice(allowed, size=self.k, replace=False))
            ins = self.instructions[int(self.rng_.integers(len(self.instructions)))]
            p = Prompt(instruction=ins, demos=demos)
            if p not in self.index_:
                return p
        raise SearchSpaceExhausted("no unseen prompt found in 1000 random draws")

    def _replace_worst(self, post: Posterior, incumbent: Prompt) -> Prompt | None:
        """The incumbent with its most harmful demonstration replaced by the best unused one."""
        theta = post.sample(self.rng_)
        scores = self._allowed(self.model_.slot_scores(theta))
        slots = [scores[d, s] for s, d in enumerate(incumbent.demos)]
        worst = int(np.argmin(slots))
        for d in np.argsort(-scores[:, worst]):
            if int(d) in incumbent.demos:
                continue
            demos = list(incumbent.demos)
            demos[worst] = int(d)
            p = Prompt(instruction=incumbent.instruction, demos=tuple(demos))
            if p not in self.index_:
                return p
        return None

    # ------------------------------------------------------------------ ask / tell
    def suggest(self) -> Prompt:
        """The prompt of the next trial (see :meth:`ask`)."""
        return self.ask().prompt

    def ask(self) -> Trial:
        """The next partial evaluation: explore, model-guided, or a halving round.

        Raises:
            SearchSpaceExhausted: The query budget is spent, or nothing is left to score.
        """
        self._check_setup()
        if self.spent_ >= self.total_:
            raise SearchSpaceExhausted("the query budget is spent")
        self.steps_ += 1
        left = self.total_ - self.spent_
        final_start = self.total_ - self.final_budget_
        if self.spent_ < self.total_ * self.explore or not self.index_:
            trial = self._trial(self._random_prompt(), self.chunk_, {"source": "explore"})
        elif self.spent_ < final_start and left > self.chunk_:
            trial = self._guided()
        else:
            trial = self._halving()
        if trial is None:
            raise SearchSpaceExhausted("no prompt has queries left to be scored on")
        return trial

    def _guided(self) -> Trial | None:
        post = self._posterior()
        ranked = self._ranked()
        if self.rng_.random() < self.replace_share:
            p = self._replace_worst(post, ranked[0])
            if p is not None:
                return self._trial(
                    p, self.chunk_, {"source": "replace-worst", "incumbent": ranked[0].as_dict()}
                )
        theta = post.sample(self.rng_)
        new = self._best_new(theta)
        u = self.rng_.normal(0.0, self.model_.prior["prompt"] * post.noise / 0.9)
        best_value = self._value(theta, new) + u
        best, source = new, "thompson"
        for p in ranked[: 4 * self.n_finalists]:  # seen prompts compete with the new one
            if len(self.scored_[p]) >= self.model_.n_queries - self.k:
                continue
            v = self._value(theta, p)
            if v > best_value:
                best, best_value, source = p, v, "extend"
        info = {
            "source": source,
            "mean": self._value(post.mean, best),
            "sample": best_value,
        }
        return self._trial(best, self.chunk_, info)

    def _halving(self) -> Trial | None:
        """Successive halving: each round scores every survivor on as many new queries."""
        if not self.finalists_:
            self.finalists_ = self._ranked()[: self.n_finalists]
            self.final_round_ = 0
            self._plan_round()
        while not self.final_queue_:
            if len(self.finalists_) <= 1:
                return None  # one survivor: more queries on it would not change the answer
            self.final_round_ += 1
            ranked = self._ranked(self.finalists_)
            self.finalists_ = ranked[: max(1, (len(ranked) + 1) // 2)]
            if len(self.finalists_) <= 1:
                return None
            self._plan_round()
        prompt = self.final_queue_.pop(0)
        trial = self._trial(
            prompt,
            self.round_size_,
            {"source": "halving", "round": self.final_round_, "survivors": len(self.finalists_)},
        )
        if trial is None:  # this one has no query left: the next one, or the next round
            return self._halving()
        return trial

    def _plan_round(self) -> None:
        left = self.total_ - self.spent_
        # the rounds down to two survivors; the last one gets what is left
        rounds_left = max(1, int(np.ceil(np.log2(max(2, len(self.finalists_))))))
        per_round = max(1, left // rounds_left)
        self.round_size_ = max(1, per_round // max(1, len(self.finalists_)))
        self.final_queue_ = list(self.finalists_)

    def tell(
        self,
        trial: Trial,
        reward: float,
        *,
        per_query: Sequence[dict[str, Any]] | None = None,
    ) -> None:
        """Add the trial's per-query outcomes to the model.

        Without per-query records (a trial told from elsewhere) the mean reward stands
        for each of its queries.
        """
        self._check_setup()
        prompt = trial.prompt
        if prompt not in self.index_:
            self.index_[prompt] = len(self.index_)
            self.scored_[prompt] = set()
            self.seen_.add(prompt)
        # the order of the evaluation's records: validation queries, then pool queries
        cols = list(range(self.n_val_)) if trial.full else list(trial.val or ())
        cols += [self.n_val_ + i for i in trial.queries or ()]
        rows = list(per_query) if per_query is not None else []
        ins = self.instructions.index(prompt.instruction)
        for n, col in enumerate(cols):
            r = rows[n] if n < len(rows) else {}
            y = r.get("signal")
            y = float(r.get("score", reward)) if y is None else float(y)
            w = 1.0 if col < self.n_val_ else float(self.pool_weight)
            self.model_.add(
                prompt=self.index_[prompt],
                demos=prompt.demos,
                instruction=ins,
                query=col,
                y=y,
                weight=w,
            )
            self.scored_[prompt].add(col)
            if col < self.n_val_:
                self.val_uses_[col] += 1
            else:
                self.pool_uses_[col - self.n_val_] += 1
        self.spent_ += len(cols)
        self.history_.append((prompt, float(reward)))
        self.stale_ = True

    def recommend(self) -> tuple[Prompt, dict[str, Any]]:
        """The survivor of the halving (else the best posterior mean) and why.

        ``effect`` is the posterior mean of the prompt's part of the signal (its
        demonstrations, slots, instruction and own residual), relative to the average
        observation; ``posterior_std`` its uncertainty.

        Raises:
            InputDataError: Nothing has been observed yet.
        """
        if not getattr(self, "index_", None):
            raise InputDataError("the optimizer has observed nothing yet")
        post = self._posterior()
        pool = self.finalists_ or list(self.index_)
        # a prompt that shows a mislabeled item loses; ties: more queries; never "earliest"
        best = max(
            pool,
            key=lambda p: (
                self._clean(p),
                round(self._value(post.mean, p), 9),
                len(self.scored_[p]),
            ),
        )
        ins = self.instructions.index(best.instruction)
        return best, {
            "rule": "successive halving survivor with the highest posterior mean"
            if self.finalists_
            else "highest posterior mean",
            "effect": self._value(post.mean, best),
            "posterior_std": self.model_.prompt_std(post, best.demos, ins, self.index_[best]),
            "queries": len(self.scored_[best]),
            "finalists": [
                {
                    **p.as_dict(),
                    "effect": self._value(post.mean, p),
                    "queries": len(self.scored_[p]),
                }
                for p in (self.finalists_ or [])
            ],
            "suspects": sorted(self.suspects_),
            "mislabeled": sorted(self.mislabeled_),
        }
