"""MDL ranking of candidate demonstration sets (self-adaptive in-context learning)."""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar

import numpy as np

from iclopt.data import Example, Task
from iclopt.errors import InputDataError, LLMError
from iclopt.evaluation import Evaluator
from iclopt.params import Interval
from iclopt.prompts import Prompt
from iclopt.selectors.base import FitContext, Selector, register_selector

__all__ = ["MDLSelector", "label_entropy"]


def label_entropy(logprobs: np.ndarray) -> np.ndarray:
    """Entropy (nats) of the label distribution given by unnormalized log-probabilities.

    Args:
        logprobs: ``c x m`` log-probabilities of ``m`` labels under ``c`` prompts; each
            row is renormalized by a softmax over the labels.

    Returns:
        ``c`` entropies; a row whose labels are all ``-inf`` gets ``inf``.

    Raises:
        LLMError: A log-probability is NaN or ``+inf``.
    """
    lp = np.asarray(logprobs, dtype=np.float64)
    if np.isnan(lp).any() or np.isposinf(lp).any():
        raise LLMError("the LLM returned a NaN or +inf log-probability")
    ent = np.full(len(lp), np.inf)
    live = ~np.isneginf(lp.max(axis=1))
    shifted = lp[live] - lp[live].max(axis=1, keepdims=True)
    logp = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    p = np.exp(logp)
    ent[live] = -(p * np.where(p > 0, logp, 0.0)).sum(axis=1)
    return ent


@register_selector("mdl")
class MDLSelector(Selector):
    """Per query, the candidate demonstration set whose prompt gives the shortest MDL code.

    Wu et al. (2022), "Self-adaptive In-context Learning: An Information Compression
    Perspective for In-context Example Selection and Ordering" (ACL 2023): select, then
    rank. For a query ``x``, ``candidates_n`` ordered k-sets are proposed: the first is
    the k nearest pool items by cosine of the input embeddings (KATE order, most similar
    last); the others are random ordered k-subsets of the ``window`` nearest items. Each
    candidate ``c`` is ranked by the codelength of the query's label,
    ``-sum_y p(y | c, x) log p(y | c, x)``: the entropy of the label distribution the LLM
    gives (its label log-likelihoods, softmax-normalized over ``task.labels``). The
    candidate with the LOWEST codelength is returned; ties go to the earlier candidate,
    so an uninformative LLM gives the KATE prompt.

    Needs a classification task (``task.labels`` set), an embedder and an LLM. Every
    query costs ONE batched ``LLM.score`` call of ``candidates_n x len(labels)``
    prompts, rendered exactly as :class:`~iclopt.evaluation.Evaluator` renders them
    (same template), and charged to the context's ``spent`` budget, which is checked
    first (:class:`~iclopt.errors.BudgetExhausted` before any spending).

    Randomness: the candidates of a query are drawn from an RNG keyed by the query text
    and one number drawn from the selector's seeded RNG at :meth:`fit`, so the same seed
    gives the same prompt for a query whatever the order queries are asked in.

    Args:
        seed: Seed of the candidate sampling; ``None`` draws fresh entropy.
        candidates_n: Candidate sets ranked per query (including the KATE one). The
            paper ranks more; the default is kept small for CPU models.
        window: How many nearest pool items the random candidates come from;
            ``None`` means ``2 k`` (never fewer than ``k``, never more than the pool).

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeEmbedder, FakeLLM
        >>> task = get_task("sentiment")
        >>> ctx = FitContext(embedder=FakeEmbedder(), llm=FakeLLM())
        >>> sel = MDLSelector(seed=0).fit(task, ctx)
        >>> len(sel.select(task, 3, query="A lovely, moving film.").demos)
        3
        >>> ctx.spent.spent.llm_calls  # 4 candidates x 2 labels
        8
    """

    per_query = True
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "candidates_n": [Interval(int, 1, None)],
        "window": [Interval(int, 1, None), None],
    }

    def __init__(
        self, *, seed: int | None = None, candidates_n: int = 4, window: int | None = None
    ) -> None:
        super().__init__(seed=seed)
        self.candidates_n = candidates_n
        self.window = window

    def fit(self, task: Task, context: FitContext | None = None) -> MDLSelector:
        """Embed the pool inputs and set up the LLM and the prompt renderer.

        Raises:
            InputDataError: A parameter is invalid, the task has no label set, or the
                embedder or LLM is missing.
        """
        if not task.labels:
            raise InputDataError(
                f"method 'mdl' needs a classification task with a label set; task "
                f"{task.name!r} has none (pass labels, or use another method)"
            )
        super().fit(task, context)
        self.embedder_ = self.context_.need_embedder(self.name)
        self.llm_ = self.context_.need_llm(self.name)
        kwargs = {
            **self.context_.evaluator_kwargs,
            "budget": self.context_.spent,
            "scoring": "labels",
        }
        self.evaluator_ = Evaluator(task, self.llm_, **kwargs)
        self.pool_emb_ = np.asarray(self.embedder_([ex.input for ex in task.pool]))
        self.query_key_ = int(self.rng_.integers(2**63))
        return self

    def _query_rng(self, query: str) -> np.random.Generator:
        digest = hashlib.sha256(query.encode("utf-8")).digest()
        return np.random.default_rng([self.query_key_, int.from_bytes(digest[:8], "little")])

    def candidate_sets(self, query: str, k: int) -> list[tuple[int, ...]]:
        """The ordered k-sets ranked for ``query``: KATE's first, then distinct random ones.

        Fewer than ``candidates_n`` come back when the window has fewer distinct ordered
        k-subsets.
        """
        q = np.asarray(self.embedder_([query])[0])
        sims = self.pool_emb_ @ q
        ranking = np.lexsort((np.arange(len(sims)), -sims))
        window = min(len(ranking), max(int(k), 2 * k if self.window is None else self.window))
        first = tuple(int(i) for i in ranking[:k][::-1])
        cands = [first]
        seen = {first}
        rng = self._query_rng(query)
        attempts = 0
        while len(cands) < self.candidates_n and attempts < 20 * self.candidates_n:
            attempts += 1
            draw = tuple(int(i) for i in rng.choice(ranking[:window], size=k, replace=False))
            if draw not in seen:
                seen.add(draw)
                cands.append(draw)
        return cands

    def codelengths(self, query: str, candidates: list[tuple[int, ...]]) -> np.ndarray:
        """MDL codelength (label entropy, nats) of ``query`` under each candidate set.

        One batched label-scoring call through the evaluator (so the result cache and the
        budget apply), with every candidate's prompt for the same query.

        Raises:
            BudgetExhausted: The budget cannot pay for the call; nothing was spent.
            LLMError: The LLM failed or returned malformed scores.
        """
        labels = list(self.task_.labels or ())
        probe = Example(query, "", id="query")  # its label is never read
        res = self.evaluator_.evaluate_per_query(
            [Prompt(None, c) for c in candidates], [probe] * len(candidates)
        )
        scores = [[row["label_logprobs"][lab] for lab in labels] for row in res.per_example]
        return label_entropy(np.asarray(scores, dtype=np.float64))

    def select(self, task: Task, k: int, *, query: str | None = None) -> Prompt:
        """The candidate set with the lowest codelength for ``query``."""
        self._check(task, k, query)
        assert query is not None  # checked above
        cands = self.candidate_sets(query, int(k))
        if len(cands) == 1:  # nothing to rank: no LLM call
            return Prompt(None, cands[0])
        best = int(np.argmin(self.codelengths(query, cands)))  # first minimum: earliest
        return Prompt(None, cands[best])
