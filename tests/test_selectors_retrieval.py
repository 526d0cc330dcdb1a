"""Vote-k, DPP and MDL selectors on small synthetic tasks with fake models."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np
import pytest

from iclopt.data import Example, Task
from iclopt.datasets import get_task
from iclopt.embedders.base import Embedder
from iclopt.errors import BudgetExhausted, InputDataError, LLMError
from iclopt.evaluation import Budget, Evaluator
from iclopt.llms.base import LLM
from iclopt.prompts import Prompt
from iclopt.selectors import (
    SELECTORS,
    DPPSelector,
    FitContext,
    MDLSelector,
    SimilaritySelector,
    VoteKSelector,
)
from iclopt.selectors.dpp import greedy_map_dpp
from iclopt.selectors.mdl import label_entropy
from iclopt.selectors.votek import knn_graph, votek_order
from iclopt.testing import FakeEmbedder, FakeLLM

DIM = 24


def unit(*parts: tuple[int, float]) -> np.ndarray:
    v = np.zeros(DIM)
    for axis, value in parts:
        v[axis] += value
    return v / np.linalg.norm(v)


class VecEmbedder(Embedder):
    """Embeds each known text to a fixed vector."""

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    @property
    def identity(self) -> str:
        return "vec-embedder"

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        return np.stack([self.vectors[t] for t in texts])


class GoldLLM(LLM):
    """Confident (label 'pos') when a prompt shows a demonstration containing GOLD."""

    def __init__(self, *, informative: bool = True) -> None:
        self.informative = informative
        self.calls: list[tuple[list[str], list[str]]] = []

    @property
    def identity(self) -> str:
        return "gold-llm"

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = 16, stop: Sequence[str] = ()
    ) -> list[str]:
        return [" pos" for _ in prompts]

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        self.calls.append((list(prompts), list(continuations)))
        out = []
        for p, c in zip(prompts, continuations, strict=True):
            gold = self.informative and "GOLD" in p.rsplit("\n\n", 1)[0]
            out.append((0.0 if c.strip() == "pos" else -10.0) if gold else -1.0)
        return out


def make_task(inputs: Sequence[str], labels: tuple[str, ...] | None = ("neg", "pos")) -> Task:
    outs = labels or ("a", "b")
    pool = [Example(t, outs[i % 2], id=str(i)) for i, t in enumerate(inputs)]
    return Task("synthetic", pool=pool, val=[Example("val query", outs[0], id="v")], labels=labels)


@pytest.fixture(scope="module")
def sentiment() -> Task:
    return get_task("sentiment")


def fitted(cls: type, task: Task, **kwargs: object) -> object:
    ctx = FitContext(embedder=FakeEmbedder(), llm=FakeLLM())
    return cls(**kwargs).fit(task, ctx)


ALL = [VoteKSelector, DPPSelector, MDLSelector]


# ----------------------------------------------------------------------------- shared


@pytest.mark.parametrize(
    ("name", "cls"), [("votek", VoteKSelector), ("dpp", DPPSelector), ("mdl", MDLSelector)]
)
def test_registered(name: str, cls: type) -> None:
    assert SELECTORS.get(name) is cls


@pytest.mark.parametrize("cls", ALL)
@pytest.mark.parametrize("k", [0, -1, 101, True, 2.0])
def test_bad_k_raises(sentiment: Task, cls: type, k: object) -> None:
    sel = fitted(cls, sentiment, seed=0)
    with pytest.raises(InputDataError):
        sel.select(sentiment, k, query="A fine film.")  # type: ignore[arg-type]


@pytest.mark.parametrize("cls", [DPPSelector, MDLSelector])
def test_per_query_needs_query(sentiment: Task, cls: type) -> None:
    assert cls.per_query
    sel = fitted(cls, sentiment, seed=0)
    with pytest.raises(InputDataError, match="query"):
        sel.select(sentiment, 3)


@pytest.mark.parametrize("cls", ALL)
def test_needs_embedder(sentiment: Task, cls: type) -> None:
    with pytest.raises(InputDataError, match="embedder"):
        cls().fit(sentiment, FitContext(llm=FakeLLM()))


@pytest.mark.parametrize("cls", ALL)
def test_same_seed_same_output_and_valid(sentiment: Task, cls: type) -> None:
    queries = [ex.input for ex in sentiment.val[:3]]
    pool_before = list(sentiment.pool)
    a = fitted(cls, sentiment, seed=3)
    b = fitted(cls, sentiment, seed=3)
    outs_a = [a.select(sentiment, 4, query=q) for q in queries]
    outs_b = [b.select(sentiment, 4, query=q) for q in reversed(queries)][::-1]
    assert outs_a == outs_b  # also independent of the order queries are asked in
    for p in outs_a:
        assert len(p.demos) == 4
        p.validate(len(sentiment.pool))
    assert sentiment.pool == pool_before


@pytest.mark.parametrize(
    ("cls", "kwargs"),
    [
        (VoteKSelector, {"k_graph": 0}),
        (VoteKSelector, {"rho": 0.5}),
        (DPPSelector, {"theta": -1.0}),
        (DPPSelector, {"candidates": 0}),
        (MDLSelector, {"candidates_n": 0}),
        (MDLSelector, {"window": 0}),
    ],
)
def test_bad_parameters_raise_on_fit(sentiment: Task, cls: type, kwargs: dict) -> None:
    with pytest.raises(InputDataError, match=next(iter(kwargs))):
        fitted(cls, sentiment, **kwargs)


# ----------------------------------------------------------------------------- vote-k


def star_pool() -> tuple[list[str], dict[str, np.ndarray], int, int]:
    """A dense star (centre + 6 spokes) and a small star (centre + 3 spokes), far apart."""
    vecs: dict[str, np.ndarray] = {}
    big = [("big centre", unit((0, 1.0)))]
    big += [(f"big spoke {a}{s}", unit((0, 1.0), (a, 0.1 * s))) for a in (1, 2, 3) for s in (1, -1)]
    small = [("small centre", unit((12, 1.0)))]
    small += [
        (f"small spoke {a}{s}", unit((12, 1.0), (a, 0.1 * s)))
        for a, s in ((13, 1), (13, -1), (14, 1))
    ]
    # interleave so that pool index gives the centres no advantage
    items = [*big[1:4], *small[1:], small[0], *big[4:], big[0]]
    vecs = dict(items)
    texts = [t for t, _ in items]
    return texts, vecs, texts.index("big centre"), texts.index("small centre")


def test_votek_picks_the_hub_of_each_cluster() -> None:
    texts, vecs, big, small = star_pool()
    task = make_task(texts)
    sel = VoteKSelector(k_graph=2).fit(task, FitContext(embedder=VecEmbedder(vecs)))
    assert sel.select(task, 1).demos == (big,)  # the densest point first
    # the big star's voters are now discounted: the small star's hub wins next,
    # and the first pick goes last, next to the query
    assert sel.select(task, 2).demos == (small, big)
    assert sel.select(task, 2, query="ignored") == sel.select(task, 2)
    # random selection would rarely do this: 2 of 11 items, one exact pair
    rng = np.random.default_rng(0)
    hits = sum(
        set(rng.choice(len(texts), 2, replace=False).tolist()) == {big, small} for _ in range(200)
    )
    assert hits < 20


def brute_votek(emb: np.ndarray, k_graph: int, k: int, rho: float) -> list[int]:
    """Su et al. (2022), Algorithm 1, written with loops."""
    n = len(emb)
    sims = emb @ emb.T
    nbrs = []
    for v in range(n):
        others = sorted((u for u in range(n) if u != v), key=lambda u: (-sims[v, u], u))
        nbrs.append(set(others[:k_graph]))
    chosen: list[int] = []
    for _ in range(k):
        best, best_score = -1, -math.inf
        for u in range(n):
            if u in chosen:
                continue
            score = sum(
                rho ** -len(nbrs[v] & set(chosen))
                for v in range(n)
                if v not in chosen and u in nbrs[v]
            )
            if score > best_score + 1e-12:
                best, best_score = u, score
        chosen.append(best)
    return chosen


def test_votek_matches_the_algorithm_written_with_loops() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 8))
    emb = np.concatenate([c + 0.3 * rng.normal(size=(m, 8)) for c, m in zip(centres, (15, 8, 4))])
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    nbrs = knn_graph(emb, 4, chunk=5)
    assert nbrs.shape == (27, 4)
    assert not (nbrs == np.arange(27)[:, None]).any()
    assert votek_order(nbrs, 8, 10.0) == brute_votek(emb, 4, 8, 10.0)


# ----------------------------------------------------------------------------- DPP


def dup_pool() -> tuple[list[str], dict[str, np.ndarray], int]:
    """Relevant items (one duplicated, the most relevant) and irrelevant ones."""
    items = [
        ("far a", unit((10, 1.0))),
        ("near 1", unit((0, 1.0), (1, 0.4))),
        ("far b", unit((11, 1.0))),
        ("near 2", unit((0, 1.0), (2, 0.5))),
        ("near 1 copy", unit((0, 1.0), (1, 0.4))),
        ("near 3", unit((0, 1.0), (3, 0.5))),
        ("far c", unit((12, 1.0))),
        ("query", unit((0, 1.0))),
    ]
    vecs = dict(items)
    texts = [t for t, _ in items[:-1]]
    return texts, vecs, texts.index("near 1")


def test_dpp_is_relevant_and_diverse() -> None:
    texts, vecs, top = dup_pool()
    task = make_task(texts)
    ctx = FitContext(embedder=VecEmbedder(vecs))
    demos = DPPSelector(theta=2.0).fit(task, ctx).select(task, 3, query="query").demos
    picked = {texts[i] for i in demos}
    assert picked == {"near 1", "near 2", "near 3"}  # relevant, and never the copy
    assert demos[-1] == top  # most relevant last
    # KATE takes the near-duplicate: the DPP's diversity term is what avoids it
    kate = SimilaritySelector().fit(task, ctx).select(task, 3, query="query").demos
    assert {texts[i] for i in kate} >= {"near 1", "near 1 copy"}


def test_dpp_never_picks_two_identical_items(sentiment: Task) -> None:
    pool = [ex for ex in sentiment.pool[:10] for _ in range(2)]
    task = Task("dups", pool=pool, val=sentiment.val[:2], labels=sentiment.labels)
    sel = DPPSelector().fit(task, FitContext(embedder=FakeEmbedder()))
    for ex in sentiment.val[:5]:
        demos = sel.select(task, 6, query=ex.input).demos
        assert len({pool[i].input for i in demos}) == 6


def test_greedy_map_takes_the_best_det_ratio_each_step() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(9, 5))
    kernel = x @ x.T + 1e-3 * np.eye(9)
    chosen = greedy_map_dpp(kernel, 6)
    assert len(set(chosen)) == 6
    for t in range(6):
        prefix = chosen[:t]
        dets = {
            j: np.linalg.det(kernel[np.ix_([*prefix, j], [*prefix, j])])
            for j in range(9)
            if j not in prefix
        }
        assert chosen[t] == max(dets, key=lambda j: (dets[j], -j))


def test_dpp_shortlist_smaller_than_k(sentiment: Task) -> None:
    sel = fitted(DPPSelector, sentiment, candidates=2)
    assert len(sel.select(sentiment, 5, query="Great.").demos) == 5


# ----------------------------------------------------------------------------- MDL


def mdl_pool() -> tuple[list[str], dict[str, np.ndarray]]:
    """Similarity rank: near0 > near1 > GOLD (3rd) > near3 > far items."""
    items = [
        ("far x", unit((20, 1.0))),
        ("near1", unit((0, 1.0), (2, 0.2))),
        ("GOLD item", unit((0, 1.0), (3, 0.3))),
        ("near0", unit((0, 1.0), (1, 0.1))),
        ("far y", unit((21, 1.0))),
        ("near3", unit((0, 1.0), (4, 0.4))),
        ("query", unit((0, 1.0))),
    ]
    return [t for t, _ in items[:-1]], dict(items)


def test_mdl_picks_the_lowest_codelength_candidate() -> None:
    texts, vecs = mdl_pool()
    task = make_task(texts, labels=("neg", "pos"))
    llm = GoldLLM()
    ctx = FitContext(embedder=VecEmbedder(vecs), llm=llm)
    sel = MDLSelector(seed=0, candidates_n=6).fit(task, ctx)
    cands = sel.candidate_sets("query", 2)
    kate = (texts.index("near1"), texts.index("near0"))
    assert cands[0] == kate
    window = {texts.index(t) for t in ("near0", "near1", "GOLD item", "near3")}
    assert len(set(cands)) == len(cands) == 6
    assert all(set(c) <= window for c in cands)
    gold = texts.index("GOLD item")
    assert any(gold in c for c in cands)

    prompt = sel.select(task, 2, query="query")
    assert gold in prompt.demos  # the only confident prompts contain GOLD
    assert prompt.demos != kate  # so similarity alone would not give it
    # one batched call: 6 candidates x 2 labels, rendered as the Evaluator does
    assert len(llm.calls) == 1
    prompts, conts = llm.calls[0]
    assert len(prompts) == 12
    assert conts[:2] == [" neg\n\n", " pos\n\n"]  # label + what ends an answer
    ev = Evaluator(task, llm)
    assert prompts[0] == ev.render(Prompt(None, kate), "query")
    assert ctx.spent.spent.llm_calls == 12
    assert ctx.spent.spent.prompt_tokens == sum(llm.count_tokens(prompts))


def test_mdl_uninformative_llm_gives_kate() -> None:
    texts, vecs = mdl_pool()
    task = make_task(texts)
    ctx = FitContext(embedder=VecEmbedder(vecs), llm=GoldLLM(informative=False))
    demos = MDLSelector(seed=0).fit(task, ctx).select(task, 3, query="query").demos
    kate = SimilaritySelector().fit(task, ctx).select(task, 3, query="query").demos
    assert demos == kate


def test_mdl_checks_the_budget_before_spending() -> None:
    texts, vecs = mdl_pool()
    task = make_task(texts)
    llm = GoldLLM()
    ctx = FitContext(embedder=VecEmbedder(vecs), llm=llm, spent=Budget(max_llm_calls=3))
    sel = MDLSelector(seed=0).fit(task, ctx)
    with pytest.raises(BudgetExhausted):
        sel.select(task, 2, query="query")
    assert llm.calls == []
    assert ctx.spent.spent.llm_calls == 0


def test_mdl_needs_labels_and_llm() -> None:
    texts, vecs = mdl_pool()
    with pytest.raises(InputDataError, match="label set"):
        MDLSelector().fit(
            make_task(texts, labels=None), FitContext(embedder=VecEmbedder(vecs), llm=GoldLLM())
        )
    with pytest.raises(InputDataError, match="LLM"):
        MDLSelector().fit(make_task(texts), FitContext(embedder=VecEmbedder(vecs)))


def test_mdl_seed_changes_candidates(sentiment: Task) -> None:
    q = sentiment.val[0].input
    draws = {
        tuple(fitted(MDLSelector, sentiment, seed=s).candidate_sets(q, 3)[1]) for s in range(5)
    }
    assert len(draws) > 1


def test_label_entropy() -> None:
    ent = label_entropy(np.array([[0.0, 0.0], [0.0, -np.inf], [-np.inf, -np.inf], [-1.0, -1.0]]))
    assert ent[0] == pytest.approx(math.log(2))
    assert ent[1] == 0.0
    assert ent[2] == math.inf
    assert ent[3] == pytest.approx(math.log(2))
    with pytest.raises(LLMError):
        label_entropy(np.array([[0.0, np.nan]]))


def test_mdl_never_proposes_more_candidates_than_exist() -> None:
    # all ordered 2-subsets of a 4-item window: MDL never proposes more than exist
    texts, vecs = mdl_pool()
    task = make_task(texts)
    ctx = FitContext(embedder=VecEmbedder(vecs), llm=GoldLLM())
    sel = MDLSelector(seed=1, candidates_n=50, window=3).fit(task, ctx)
    cands = sel.candidate_sets("query", 2)
    assert len(cands) == len(list(itertools.permutations(range(3), 2)))
