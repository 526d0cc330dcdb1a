"""DETAIL: demonstration attribution from one forward pass (Zhou et al., NeurIPS 2024).

Zhou, Lin, Xu, Prakash, Rus and Low, "DETAIL: Task DEmonsTration Attribution for
Interpretable In-context Learning", NeurIPS 2024 (arXiv:2405.14899). The transformer is
viewed as fitting, in context, a ridge regression on its internal representations of the
demonstrations; influence functions (Koh and Liang, 2017) of that surrogate say which
demonstration helps a query (test influence) and which one the fit finds hard to explain
(self influence: likely mislabeled).

What iclopt computes, for a prompt with ``n`` demonstrations:

* ``m_i``: hidden state at a layer (default: the middle one) of the token that predicts
  demonstration ``i``'s answer, the last token of its output prefix (``":"`` of
  ``"Output:"``), located from the tokenizer's offsets; ``q``: the last token of a query
  prompt. All from the prompts the LLM really sees. Optionally a seeded Gaussian random
  projection to ``projection_dim`` dimensions.
* targets ``y_i``: one-hot over the task's label set for classification tasks; for
  generation tasks, one-hot of the **first token of the gold answer** (over the distinct
  first tokens that occur, which gives exactly the inner products of a one-hot over the
  whole vocabulary).
* the ridge fit ``w = M^T (M M^T + lam I)^-1 Y`` and ``H = M^T M + lam I``; per-demo
  gradient ``g_i = m_i (m_i^T w - y_i)^T``; test influence ``<g_q, H^-1 g_i>`` summed over
  the queries (higher = more helpful); self influence ``<g_i, H^-1 g_i>`` (higher = more
  suspect).

Deviations from the reference code, on purpose: everything is computed in float64 and in
kernel (Woodbury) form, with ``n x n`` solves only (``d`` is never inverted); and the
gradient has no extra ``lam * w`` term. With it, every gradient becomes
``g_i - sum_j g_j`` (the ridge optimality condition), and when ``d > n`` (the in-context
regime) self influence turns into about ``sum_j s_j - s_i``: the ranking inverts
(``tests/test_attribution.py`` shows it on synthetic data).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from scipy.linalg import cho_factor, cho_solve

from iclopt.attribution._states import locate_demo_tokens
from iclopt.attribution.base import Attribution, Attributor, register_attributor
from iclopt.data import Example, Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Cost
from iclopt.llms.base import LLM, WhiteBoxLLM
from iclopt.params import Interval, Options, check_parameters
from iclopt.prompts import Prompt, Template

__all__ = ["Detail", "RidgeInfluence", "ridge_influence"]


class RidgeInfluence:
    """Influence values of the ridge surrogate, in kernel form (float64).

    Attributes:
        self_influence: ``n`` values ``<g_i, H^-1 g_i>``.
        test_influence: ``n x q`` values ``<g_q, H^-1 g_i>`` (``None`` without queries).
        predictions: ``q x C`` surrogate predictions ``q^T w`` (``None`` without queries).
        residuals: ``n x C`` residuals ``m_i^T w - y_i``.
    """

    def __init__(
        self,
        self_influence: np.ndarray,
        test_influence: np.ndarray | None,
        predictions: np.ndarray | None,
        residuals: np.ndarray,
    ) -> None:
        self.self_influence = self_influence
        self.test_influence = test_influence
        self.predictions = predictions
        self.residuals = residuals


def ridge_influence(
    m: np.ndarray,
    y: np.ndarray,
    lam: float,
    q: np.ndarray | None = None,
    yq: np.ndarray | None = None,
) -> RidgeInfluence:
    """Self and test influence of each row of ``m`` on a ridge fit, in kernel form.

    With ``K = M M^T`` and ``A = K + lam I`` (``n x n``): ``alpha = A^-1 Y``,
    ``w = M^T alpha``, residuals ``R = M w - Y = -lam alpha``. By Woodbury,
    ``M H^-1 M^T = K A^-1 = I - lam A^-1`` and ``q^T H^-1 M^T = (A^-1 M q)^T``, so

    * self influence ``<g_i, H^-1 g_i> = |r_i|^2 (1 - lam (A^-1)_ii)``,
    * test influence ``<g_q, H^-1 g_i> = (r_q . r_i) (A^-1 M q)_i``, with
      ``r_q = q^T w - y_q``.

    Args:
        m: ``n x d`` demonstration representations.
        y: ``n x C`` targets.
        lam: Ridge penalty (> 0).
        q: ``Q x d`` query representations, or ``None``.
        yq: ``Q x C`` query targets; rows may be ``None``-free pseudo-labels.

    Returns:
        The influences (see :class:`RidgeInfluence`).

    Example:
        >>> rng = np.random.default_rng(0)
        >>> m, y = rng.normal(size=(5, 8)), np.eye(2)[[0, 1, 0, 1, 1]]
        >>> ridge_influence(m, y, 1.0).self_influence.shape
        (5,)
    """
    m = np.asarray(m, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if not lam > 0:
        raise InputDataError(f"the ridge penalty must be > 0, got {lam!r}")
    n = m.shape[0]
    a = m @ m.T
    a[np.diag_indices(n)] += lam
    cho = cho_factor(a, lower=True)
    alpha = cho_solve(cho, y)
    resid = -lam * alpha
    a_inv_diag = np.diag(cho_solve(cho, np.eye(n)))
    self_infl = np.sum(resid * resid, axis=1) * (1.0 - lam * a_inv_diag)
    if q is None:
        return RidgeInfluence(self_infl, None, None, resid)
    q = np.asarray(q, dtype=np.float64)
    kq = m @ q.T  # n x Q
    pred = kq.T @ alpha  # Q x C
    if yq is None:
        raise InputDataError("query targets are needed for test influence")
    rq = pred - np.asarray(yq, dtype=np.float64)  # Q x C
    test = (resid @ rq.T) * cho_solve(cho, kq)  # n x Q
    return RidgeInfluence(self_infl, test, pred, resid)


@register_attributor("detail")
class Detail(Attributor):
    """DETAIL (Zhou et al., NeurIPS 2024): influence of each demonstration, one forward pass.

    White-box backends only (hidden states); ``loo`` and ``shapley`` work with any.
    See the module docstring for what is computed and where iclopt departs from the
    reference code.

    Args:
        llm: A backend exposing hidden states and token offsets (:class:`HFModel`).
        template: Prompt template; completion style by default.
        layer: Hidden-state layer (0 = embeddings, ``L`` = last); default ``L // 2``.
        lam: Ridge penalty, relative (> 0): ``lambda = lam * trace(M M^T) / n``, the mean
            squared norm of the demonstrations' representations, so that one setting means
            the same at every layer of every model (hidden-state scales differ by orders
            of magnitude). Default 0.01 (measured in ``docs/benchmarks.md``).
        center: Center representations and targets on the demonstrations' mean (a ridge
            fit with an unpenalized intercept; not in the paper). Off by default; it helps
            on some tasks and hurts on others (``docs/benchmarks.md``).
        rank_by: What ``suspect`` (the "likely mislabeled" ranking and the flags) is:
            ``"self"``, the self influence (the paper's noisy-demonstration detector);
            ``"test"``, minus the test influence summed over the queries (the
            demonstrations that hurt the queries most); ``"auto"`` (default): ``"test"``
            when there are queries, else ``"self"``. On SmolLM2, ``"test"`` detected
            flipped labels better on average (``docs/benchmarks.md``). Both are always
            computed: ``extra["self_influence"]`` and ``scores``.
        projection_dim: Project representations to this many dimensions with a seeded
            Gaussian matrix (entries ``N(0, 1/projection_dim)``); ``None``: no projection.
        seed: Seed of the projection; ``None`` draws fresh entropy.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.llms import smollm2
        >>> task = get_task("sentiment")
        >>> detail = Detail(llm=smollm2())  # doctest: +SKIP
        >>> attr = detail.attribute(task, Prompt(None, (0, 1, 2, 3)))  # doctest: +SKIP
        >>> attr.ranking()  # doctest: +SKIP
    """

    needs_hidden_states = True
    score_scale = "share"
    score_measure = "DETAIL's test influence"
    #: ``layer`` is checked against the model's depth in :meth:`_attribute`.
    _parameter_constraints: ClassVar[dict[str, list[Any]]] = {
        "lam": [Interval(float, 0, None, closed="neither")],
        "rank_by": [Options("auto", "self", "test")],
        "projection_dim": [Interval(int, 1, None), None],
    }

    def __init__(
        self,
        *,
        llm: LLM,
        template: Template | None = None,
        layer: int | None = None,
        lam: float = 0.01,
        center: bool = False,
        rank_by: str = "auto",
        projection_dim: int | None = None,
        seed: int | None = 0,
    ) -> None:
        self.llm = llm
        self.template = template
        self.layer = layer
        self.lam = lam
        self.center = center
        self.rank_by = rank_by
        self.projection_dim = projection_dim
        self.seed = seed

    # ------------------------------------------------------------------ checks
    def _white_box(self) -> WhiteBoxLLM:
        """The model, which must expose hidden states."""
        llm = self.llm
        if not isinstance(llm, WhiteBoxLLM):
            raise InputDataError(
                f"method 'detail' needs hidden states, and model {llm.identity!r} does not "
                "expose them; use 'loo' or 'shapley', which work with any backend"
            )
        return llm

    def _layer(self) -> int:
        """The layer to read, checked against the model's depth (not known before)."""
        n_layers = self._white_box().num_layers
        layer = n_layers // 2 if self.layer is None else self.layer
        try:
            check_parameters("Detail", {"layer": [Interval(int, 0, n_layers)]}, {"layer": layer})
        except InputDataError as exc:
            raise InputDataError(
                f"{exc} Layer 0 is the embeddings, {n_layers} the last layer."
            ) from None
        return layer

    def _render(
        self, template: Template, prompt: Prompt, demos: Sequence[Example], query: str
    ) -> str:
        if template.style == "chat":
            return self.llm.apply_chat_template(
                template.render_messages(prompt.instruction, demos, query)
            )
        return template.render_text(prompt.instruction, demos, query)

    # ------------------------------------------------------------------ main
    def _attribute(
        self, task: Task, prompt: Prompt, queries: Sequence[Example | str] | None
    ) -> Attribution:
        """Attribute ``prompt``'s demonstrations (see :meth:`Attributor.attribute`).

        ``queries`` may hold plain strings (unlabelled queries): their target is the
        surrogate's own prediction (a pseudo-label). An empty list computes self
        influence only (noisy-label screening, the cheapest call).
        """
        layer = self._layer()
        start = time.perf_counter()
        template = self.template or Template()
        demos = [task.pool[i] for i in prompt.demos]
        qs = list(task.val if queries is None else queries)
        q_inputs = [q if isinstance(q, str) else q.input for q in qs]
        texts = [self._render(template, prompt, demos, x) for x in q_inputs]
        base = texts[0] if texts else self._render(template, prompt, demos, "")
        prefixes = [
            self._render(template, Prompt(prompt.instruction, prompt.demos[:j]), demos[:j], d.input)
            for j, d in enumerate(demos)
        ]
        llm = self._white_box()
        tokens = locate_demo_tokens(llm.token_offsets(base), base, prefixes)
        m, qrep, fed = llm.prompt_states(texts or [base], tokens.positions, layer)
        if not texts:
            qrep = qrep[:0]
        d_model = m.shape[1]
        if self.projection_dim is not None:
            rng = np.random.default_rng(self.seed)
            proj = rng.normal(
                0.0, 1.0 / np.sqrt(self.projection_dim), (d_model, self.projection_dim)
            )
            m, qrep = m @ proj, qrep @ proj

        classes, y, yq, labelled = self._targets(
            task, template, demos, tokens.answer_tokens, qs, texts
        )
        ybar = np.zeros(y.shape[1])
        if self.center:
            mu, ybar = m.mean(axis=0), y.mean(axis=0)
            m, qrep, y, yq = m - mu, qrep - mu, y - ybar, yq - ybar
        lam = float(self.lam) * float(np.sum(m * m)) / len(demos)
        if lam <= 0:  # a single demonstration, centered away
            lam = float(self.lam)
        infl = ridge_influence(m, y, lam, qrep if len(qs) else None, yq)
        if infl.test_influence is not None and not all(labelled):
            # pseudo-labels: the surrogate's own prediction for unlabelled queries
            assert infl.predictions is not None
            yq2 = yq.copy()
            for k, ok in enumerate(labelled):
                if not ok:
                    pred = infl.predictions[k] + ybar
                    yq2[k] = np.eye(len(classes))[int(np.argmax(pred))] - ybar
            infl = ridge_influence(m, y, lam, qrep, yq2)
        per_query = infl.test_influence
        scores = per_query.sum(axis=1) if per_query is not None else np.zeros(len(demos))
        rank_by = self.rank_by
        if rank_by == "auto":
            rank_by = "test" if per_query is not None else "self"
        if rank_by == "test" and per_query is None:
            raise InputDataError("rank_by='test' needs queries (test influence)")
        suspect = infl.self_influence if rank_by == "self" else -scores
        cost = Cost(
            llm_calls=len(texts) or 1, prompt_tokens=fed, seconds=time.perf_counter() - start
        )
        return self._result(
            task,
            prompt,
            qs,
            scores=scores,
            suspect=suspect,
            per_query=per_query,
            cost=cost,
            config={
                "layer": layer,
                "num_layers": self._white_box().num_layers,
                "lam": float(self.lam),
                "lambda": lam,
                "center": self.center,
                "rank_by": rank_by,
                "projection_dim": self.projection_dim,
                "seed": self.seed,
                "hidden_size": int(d_model),
                "targets": "labels" if task.labels else "first answer token",
                "classes": len(classes),
                "template": template.as_dict(),
            },
            extra={
                "self_influence": infl.self_influence.tolist(),
                "positions": tokens.positions,
                "answer_tokens": tokens.answer_tokens,
            },
        )

    def _targets(
        self,
        task: Task,
        template: Template,
        demos: Sequence[Example],
        answer_tokens: Sequence[str],
        qs: Sequence[Example | str],
        texts: Sequence[str],
    ) -> tuple[list[str], np.ndarray, np.ndarray, list[bool]]:
        """One-hot targets of demos and queries, the class names, and which queries are labelled."""
        classes: list[str] = list(task.labels or ())

        def cls(name: str) -> int:
            if name not in classes:
                classes.append(name)
            return classes.index(name)

        if task.labels:
            demo_cls = [cls(d.target) for d in demos]
            q_cls = [None if isinstance(q, str) else cls(q.target) for q in qs]
        else:
            demo_cls = [cls(a) for a in answer_tokens]
            sep = template.output_prefix[len(template.output_prefix.rstrip()) :]
            if template.style == "chat":
                sep = ""
            q_cls = [
                None if isinstance(q, str) else cls(self._first_token(t, sep + q.target))
                for q, t in zip(qs, texts)
            ]
        eye = np.eye(len(classes))
        y = eye[demo_cls]
        yq = (
            np.stack([eye[c] if c is not None else np.zeros(len(classes)) for c in q_cls])
            if qs
            else np.zeros((0, len(classes)))
        )
        return classes, y, yq, [c is not None for c in q_cls]

    def _first_token(self, text: str, answer: str) -> str:
        """Text of the first token of ``answer`` when it follows ``text``."""
        full = text + answer
        n = len(text)
        offsets = self._white_box().token_offsets(full)
        for s, e in offsets:
            if e > n and e > s:
                return full[max(s, n) : e]
        return answer[:1]
