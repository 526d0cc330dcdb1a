"""Each baseline on real data with the real models: what it picks is what it claims."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from iclopt.data import load_task
from iclopt.evaluation import Budget, Evaluator, ResultCache
from iclopt.prompts import Prompt
from iclopt.selectors import FitContext
from iclopt.selectors.best_of_n import BestOfNSelector
from iclopt.selectors.entropy import EntropySelector, global_entropy
from iclopt.selectors.similarity import SimilaritySelector, ValSimilaritySelector, ot_distance
from iclopt.selectors.uncertainty import UncertaintySelector, disagreement


@pytest.fixture(scope="module")
def task():
    bench = Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "instruction_induction"
    if not bench.is_dir():
        pytest.skip("../shared/benchmarks is not beside the checkout")
    name = "sentiment_v1"
    return load_task(
        pool=bench / "induce" / f"{name}.json",
        val=bench / "valid" / f"{name}.json",
        test=bench / "execute" / f"{name}.json",
        pool_size=40,
        val_size=8,
        test_size=8,
    )


@pytest.fixture(scope="module")
def minilm():
    from iclopt.embedders import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder().load()


@pytest.fixture()
def ctx(smol, minilm, tmp_path):
    return FitContext(
        llm=smol,
        embedder=minilm,
        budget=3,
        evaluator_kwargs={"cache": ResultCache(tmp_path / "c.sqlite")},
        spent=Budget(),
    )


def test_similarity_picks_the_nearest_most_similar_last(task, minilm, ctx):
    query = "A tender, funny and beautifully acted film."
    prompt = SimilaritySelector().fit(task, ctx).select(task, 5, query=query)
    # recompute cosine similarities independently with the raw sentence-transformers model
    pool = minilm._st.encode([e.input for e in task.pool], normalize_embeddings=True)
    q = minilm._st.encode([query], normalize_embeddings=True)[0]
    sims = pool @ q
    assert set(prompt.demos) == set(np.argsort(-sims)[:5].tolist())
    assert list(sims[list(prompt.demos)]) == sorted(sims[list(prompt.demos)])  # ascending


def test_similarity_val_set_is_closer_than_random_sets(task, minilm, ctx):
    prompt = ValSimilaritySelector().fit(task, ctx).select(task, 5)
    pool = minilm([e.input for e in task.pool])
    val = minilm([e.input for e in task.val])
    chosen = ot_distance(pool[list(prompt.demos)], val)
    rng = np.random.default_rng(0)
    random_sets = [
        ot_distance(pool[rng.choice(len(pool), 5, replace=False)], val) for _ in range(30)
    ]
    assert chosen < min(random_sets)


def test_uncertainty_selects_the_most_disagreed_upon(task, smol, ctx):
    sel = UncertaintySelector(seed=0, samples=4, temperature=1.0, max_candidates=12)
    sel.fit(task, ctx)
    prompt = sel.select(task, 3)
    unc = dict(zip(sel.candidates_.tolist(), sel.uncertainty_.tolist()))
    rest = [v for i, v in unc.items() if i not in prompt.demos]
    assert min(unc[i] for i in prompt.demos) >= max(rest)
    assert len(set(unc.values())) > 1  # the real model does disagree with itself somewhere
    assert unc[prompt.demos[-1]] == max(unc.values())  # most uncertain last
    # recompute each item's disagreement from fresh samples: no cache, one item per call
    # (a sample is a function of its key alone, so the same answers come back)
    fresh = Evaluator(task, smol, scoring="generate")
    for i in sel.candidates_.tolist()[:4]:
        answers, _ = fresh.sample(
            Prompt(None, sel.contexts_[i]), [task.pool[i].input], n=4, temperature=1.0, seed=0
        )
        assert unc[i] == pytest.approx(disagreement(answers[0]))


def test_entropy_order_beats_the_other_orders_on_its_probe_set(task, smol, ctx):
    sel = EntropySelector(seed=0, max_permutations=6, probe_size=8).fit(task, ctx)
    prompt = sel.select(task, 3)
    _, scored = sel.results_[3]
    assert len(scored) == 6
    ev = Evaluator(task, smol)
    probes = [type(task.val[0])(e.input, "", id=e.id) for e in task.val[:8]]
    recomputed = {
        perm: global_entropy(
            [r["prediction"] for r in ev.evaluate(Prompt(None, perm), probes).per_example]
        )
        for perm in itertools.islice((p for p, _ in scored), 3)
    }
    for perm, value in recomputed.items():
        assert value == pytest.approx(dict(scored)[perm])
    assert dict(scored)[prompt.demos] == max(v for _, v in scored)


def test_best_of_n_returns_the_best_validation_prompt(task, smol, ctx):
    sel = BestOfNSelector(seed=0).fit(task, ctx)
    prompt = sel.select(task, 3)
    best_score = sel.best_[3][1]
    again = Evaluator(task, smol).evaluate(prompt).score
    assert again == pytest.approx(best_score)
    assert ctx.spent.spent.evaluations == 3


def test_votek_first_pick_is_the_densest_item(task, minilm, ctx):
    from iclopt.selectors.votek import VoteKSelector

    prompt = VoteKSelector(k_graph=10).fit(task, ctx).select(task, 1)
    emb = minilm._st.encode([e.input for e in task.pool], normalize_embeddings=True)
    sims = emb @ emb.T
    np.fill_diagonal(sims, -np.inf)
    in_degree = np.zeros(len(task.pool), dtype=int)
    for row in sims:
        in_degree[np.argsort(-row, kind="stable")[:10]] += 1
    assert in_degree[prompt.demos[0]] == in_degree.max()  # one vote per neighbour list


def test_dpp_set_has_a_higher_dpp_score_than_random_sets(task, ctx):
    from iclopt.selectors.dpp import DPPSelector

    sel = DPPSelector().fit(task, ctx)
    query = "A tender, funny and beautifully acted film."
    prompt = sel.select(task, 4, query=query)
    ids, _, kernel = sel.kernel(query, 4)
    pos = {int(i): j for j, i in enumerate(ids)}

    def logdet(members):
        idx = [pos[int(i)] for i in members]
        return np.linalg.slogdet(kernel[np.ix_(idx, idx)])[1]

    rng = np.random.default_rng(0)
    randoms = [logdet(rng.choice(ids, 4, replace=False)) for _ in range(50)]
    assert logdet(prompt.demos) > max(randoms)


def test_mdl_picks_the_lowest_codelength_candidate(task, smol, ctx):
    from iclopt.selectors.mdl import MDLSelector

    sel = MDLSelector(seed=0).fit(task, ctx)
    query = task.test[0].input
    prompt = sel.select(task, 3, query=query)
    cands = sel.candidate_sets(query, 3)
    # codelengths recomputed independently: the model's own scores, no evaluator, no cache
    smol_ev = Evaluator(task, smol, scoring="labels")
    head, tail = smol_ev.label_affixes()
    labels = list(task.labels)
    texts = [smol_ev.render(Prompt(None, c), query) for c in cands]
    lps = np.array(
        smol.score(
            [t for t in texts for _ in labels], [head + lab + tail for lab in labels] * len(texts)
        )
    ).reshape(len(cands), len(labels))
    p = np.exp(lps - lps.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    lengths = -(p * np.log(p)).sum(axis=1)
    assert len(cands) >= 2 and len(set(np.round(lengths, 6))) > 1  # the real model differs
    assert prompt.demos == cands[int(np.argmin(lengths))]
