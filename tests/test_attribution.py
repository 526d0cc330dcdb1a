"""Attribution without the real model: DETAIL's algebra, Shapley's efficiency, LOO, reports, CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

import iclopt
from iclopt.attribution import (
    ATTRIBUTORS,
    Attribution,
    LeaveOneOut,
    Shapley,
    curate,
    reorder,
    ridge_influence,
)
from iclopt.cli import app
from iclopt.data import Example, Task
from iclopt.datasets import get_task
from iclopt.errors import BudgetExhausted, InputDataError
from iclopt.evaluation import Budget, ResultCache
from iclopt.prompts import Prompt
from iclopt.reports.attribution import write_attribution
from iclopt.results import OptimizationResult
from iclopt.testing import FakeLLM, check_attributor

runner = CliRunner()


# ---------------------------------------------------------------------- DETAIL algebra
def _primal(m, y, lam, q=None, yq=None, penalty_in_gradient=False):
    """The textbook (d x d) computation; optionally with the reference code's lam * w term."""
    n, d = m.shape
    h = m.T @ m + lam * np.eye(d)
    w = np.linalg.solve(h, m.T @ y)
    grads = [np.outer(m[i], m[i] @ w - y[i]) for i in range(n)]
    if penalty_in_gradient:
        grads = [g + lam * w for g in grads]
    self_infl = np.array([np.sum(g * np.linalg.solve(h, g)) for g in grads])
    if q is None:
        return self_infl, None
    test = np.zeros((n, len(q)))
    for k in range(len(q)):
        gq = np.outer(q[k], q[k] @ w - yq[k])
        hg = np.linalg.solve(h, gq)
        test[:, k] = [np.sum(g * hg) for g in grads]
    return self_infl, test


@pytest.mark.parametrize(("n", "d"), [(12, 40), (30, 8)])  # d > n (in-context regime), d < n
def test_kernel_form_equals_primal_form(n, d):
    rng = np.random.default_rng(n * d)
    m = rng.normal(size=(n, d)) * 3.0
    y = np.eye(3)[rng.integers(0, 3, n)]
    q = rng.normal(size=(5, d)) * 3.0
    yq = np.eye(3)[rng.integers(0, 3, 5)]
    for lam in (1e-3, 0.5, 20.0):
        got = ridge_influence(m, y, lam, q, yq)
        self_p, test_p = _primal(m, y, lam, q, yq)
        np.testing.assert_allclose(got.self_influence, self_p, rtol=1e-7, atol=1e-10)
        np.testing.assert_allclose(got.test_influence, test_p, rtol=1e-7, atol=1e-10)
        w = np.linalg.solve(m.T @ m + lam * np.eye(d), m.T @ y)
        np.testing.assert_allclose(got.predictions, q @ w, rtol=1e-7, atol=1e-10)


def _auroc(truth, score):
    pos, neg = score[truth == 1], score[truth == 0]
    return float(np.mean([(p > x) + 0.5 * (p == x) for p in pos for x in neg]))


def test_penalty_term_in_gradient_inverts_self_influence_ranking():
    """With d > n, adding lam * w to each gradient turns self influence into ~(sum - own)."""
    inverted = []
    for seed in range(4):
        rng = np.random.default_rng(seed)
        n, d, c = 20, 64, 3
        centers = rng.normal(size=(c, d))
        label = rng.integers(0, c, n)
        m = centers[label] + 0.5 * rng.normal(size=(n, d))
        flipped = rng.choice(n, 3, replace=False)
        noisy = label.copy()
        noisy[flipped] = (label[flipped] + 1) % c
        y = np.eye(c)[noisy]
        truth = np.zeros(n)
        truth[flipped] = 1
        lam = 0.01 * np.sum(m * m) / n
        ours = ridge_influence(m, y, lam).self_influence
        reference_style, _ = _primal(m, y, lam, penalty_in_gradient=True)
        assert _auroc(truth, ours) >= 0.9  # the flipped labels rank on top
        assert _auroc(truth, reference_style) <= 0.1  # ... and at the bottom with lam * w
        inverted.append(np.corrcoef(ours, reference_style)[0, 1])
    assert max(inverted) < -0.99


def test_ridge_influence_rejects_bad_lambda():
    with pytest.raises(InputDataError):
        ridge_influence(np.ones((2, 3)), np.eye(2), 0.0)


# ---------------------------------------------------------------------- black-box methods
@pytest.fixture()
def task():
    return get_task("sentiment")


PROMPT = Prompt(None, (0, 7, 3, 12, 5, 40))


def test_registry_names_and_unknown_method(task):
    assert ATTRIBUTORS.names() == ["detail", "loo", "shapley"]
    with pytest.raises(InputDataError, match="valid: detail, loo, shapley"):
        iclopt.attribute(task, PROMPT, llm=FakeLLM(), method="nope")


def test_loo_effects_are_differences_of_k_plus_1_evaluations(task, tmp_path):
    cache = ResultCache(tmp_path / "c.sqlite")
    attr = LeaveOneOut(llm=FakeLLM(), cache=cache, utility="metric").attribute(task, PROMPT)
    assert attr.cost.evaluations == len(PROMPT.demos) + 1
    assert attr.per_query.shape == (len(PROMPT.demos), len(task.val))
    np.testing.assert_allclose(attr.scores, attr.per_query.mean(axis=1))
    from iclopt.evaluation import Evaluator

    ev = Evaluator(task, FakeLLM())
    full = ev.evaluate(PROMPT).score
    for j in range(len(PROMPT.demos)):
        rest = Prompt(None, PROMPT.demos[:j] + PROMPT.demos[j + 1 :])
        assert attr.scores[j] == pytest.approx(full - ev.evaluate(rest).score)
    again = LeaveOneOut(llm=FakeLLM(), cache=cache, utility="metric").attribute(task, PROMPT)
    assert again.cost.llm_calls == 0 and again.cost.cache_hits > 0  # all from the cache
    np.testing.assert_allclose(again.scores, attr.scores)


def test_shapley_values_add_up_to_v_all_minus_v_empty(task):
    attr = Shapley(llm=FakeLLM(), max_permutations=40, tolerance=None, seed=3).attribute(
        task, PROMPT
    )
    total = attr.extra["v_all"] - attr.extra["v_empty"]
    error = float(np.sqrt(np.sum(attr.errors**2)))
    assert abs(attr.scores.sum() - total) <= 2 * error + 1e-9
    assert attr.scores.sum() == pytest.approx(total, abs=1e-9)  # exact per permutation
    assert attr.extra["permutations"] == 40
    assert np.all(attr.errors > 0)  # the fake LLM's game is not additive
    np.testing.assert_allclose(attr.per_query.mean(axis=1), attr.scores, atol=1e-12)


def test_shapley_seeded_early_stopping_and_budget(task):
    a = Shapley(llm=FakeLLM(), seed=1, max_permutations=6, tolerance=None).attribute(task, PROMPT)
    b = Shapley(llm=FakeLLM(), seed=1, max_permutations=6, tolerance=None).attribute(task, PROMPT)
    np.testing.assert_array_equal(a.scores, b.scores)
    loose = Shapley(llm=FakeLLM(), seed=1, tolerance=10.0, min_permutations=3).attribute(
        task, PROMPT
    )
    assert loose.extra["converged"] and loose.extra["permutations"] == 3
    capped = Shapley(llm=FakeLLM(), seed=1, budget=Budget(max_evaluations=14)).attribute(
        task, PROMPT
    )
    assert capped.extra["stopped_by_budget"] and capped.cost.evaluations <= 14
    with pytest.raises(BudgetExhausted):
        Shapley(llm=FakeLLM(), budget=Budget(max_evaluations=4)).attribute(task, PROMPT)
    with pytest.raises(InputDataError, match="max_permutations"):
        Shapley(llm=FakeLLM(), max_permutations=1).attribute(task, PROMPT)


def test_detail_needs_hidden_states_and_names_the_alternatives(task):
    with pytest.raises(InputDataError, match="use 'loo' or 'shapley'"):
        iclopt.attribute(task, PROMPT, llm=FakeLLM(), method="detail")


@pytest.mark.parametrize("name", ATTRIBUTORS.names())
def test_every_attributor_passes_the_conformance_suite(name):
    check_attributor(ATTRIBUTORS.get(name))


def test_the_settings_go_to_the_methods_that_take_them(task, tmp_path):
    from iclopt.attribution import AttributionContext, Detail, make_attributor

    path = tmp_path / "c.sqlite"
    context = AttributionContext(llm=FakeLLM(), cache=path, seed=4, budget=Budget(3))
    shapley = Shapley.from_context(context, tolerance=0.5)
    assert shapley.cache.path == path and shapley.seed == 4 and shapley.tolerance == 0.5
    assert shapley.budget is context.budget
    assert LeaveOneOut.from_context(context).config()["cache"] == str(path)
    detail = Detail.from_context(AttributionContext(llm=FakeLLM(), cache=tmp_path / "x", seed=2))
    assert detail.seed == 2 and not (tmp_path / "x").exists()  # no cache opened for it
    built = make_attributor("shapley", FakeLLM(), seed=5, max_permutations=3, tolerance=None)
    assert built.max_permutations == 3 and built.tolerance == 0.05  # None: the default
    with pytest.raises(InputDataError, match="does not take layer; it takes budget, cache"):
        make_attributor("loo", FakeLLM(), layer=2)


@pytest.mark.parametrize("method", ATTRIBUTORS.names())
def test_prompt_without_demonstrations_is_refused(task, method):
    with pytest.raises(InputDataError, match="no demonstrations"):
        iclopt.attribute(task, Prompt("x", ()), llm=FakeLLM(), method=method, cache=False)


def test_option_of_another_method_is_refused(task):
    with pytest.raises(InputDataError, match="does not take layer"):
        iclopt.attribute(task, PROMPT, llm=FakeLLM(), method="loo", layer=3, cache=False)


# ---------------------------------------------------------------------- uses and reports
def _attr(task, scores, suspect=None):
    return Attribution(
        method="loo",
        task=task.name,
        model="m",
        prompt=PROMPT,
        demos=[task.pool[i] for i in PROMPT.demos],
        scores=np.array(scores, dtype=float),
        suspect=None if suspect is None else np.array(suspect, dtype=float),
    )


def test_ranking_flags_curate_and_reorder(task):
    attr = _attr(task, [0.1, -0.3, 0.2, 0.0, -0.1, 0.4])
    assert attr.ranking() == [1, 4, 3, 0, 2, 5]
    assert attr.flagged == [1, 4]
    assert curate(task, attr, drop=2).demos == (0, 3, 12, 40)
    replaced = curate(task, attr, drop=2, replace=True, seed=0)
    assert len(replaced.demos) == 6 and replaced.demos[0] == 0 and replaced.demos[2] == 3
    assert not set(replaced.demos) & {7, 5} and len(set(replaced.demos)) == 6
    assert reorder(attr, "helpful_last").demos == (7, 5, 12, 0, 3, 40)
    assert reorder(attr, "helpful_first").demos == (40, 3, 0, 12, 5, 7)
    with pytest.raises(InputDataError):
        curate(task, attr, drop=7)
    with pytest.raises(InputDataError):
        reorder(attr, "sideways")
    outlier = _attr(task, [0] * 6, suspect=[1.0, 1.1, 0.9, 9.0, 1.05, 0.95])
    assert outlier.flagged == [3] and outlier.most_harmful() == 3


def test_report_escapes_dataset_text_and_inlines_the_chart(task, tmp_path):
    pool = list(task.pool)
    pool[7] = Example("<script>alert('x')</script> | *not bold* $x^2$", "negative", "evil")
    hostile = Task(task.name, pool, task.val, task.test, task.metric, task.labels)
    attr = _attr(hostile, [0.1, -0.3, 0.2, 0.0, -0.1, 0.4])
    attr.prompt = Prompt("Say <b>why</b>", PROMPT.demos)
    paths = write_attribution(attr, tmp_path / "rep")
    assert sorted(p.name for p in paths.values()) == [
        "attribution.html",
        "attribution.json",
        "attribution.md",
    ]
    page = paths["html"].read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)" in page
    assert "<b>why" not in page and "data:image/png;base64," in page
    assert page.count('class="flagged"') == 2
    md = paths["md"].read_text()
    assert "<script>" not in md and "&lt;script&gt;" in md and "\\| \\*not bold\\*" in md
    data = json.loads(paths["json"].read_text())
    assert data["demos"][1]["input"].startswith("<script>")  # JSON keeps the raw text
    assert data["flagged"] == [1, 4] and data["method"] == "loo"
    assert not list((tmp_path / "rep").glob(".attribution*"))  # no temporary files left


# ---------------------------------------------------------------------- CLI bad input
def _one_line_error(result, needle):
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output and needle in lines[0], lines[0]


@pytest.fixture()
def fake_cli(monkeypatch):
    import iclopt.cli.attribute as mod

    monkeypatch.setattr(mod, "load_llm", lambda model, **kw: FakeLLM())


def _result_file(tmp_path, task, demos=(0, 7, 3), model="fake-llm-v1", pool_override=None):
    pool = pool_override or task.pool
    res = OptimizationResult(
        best=Prompt(None, demos),
        demos=[pool[i] for i in demos],
        val_score=0.5,
        test_score=None,
        config={"task_source": {"task": "sentiment"}, "sizes": {"pool": 100, "val": 20}},
        model=model,
        task=task.name,
    )
    path = tmp_path / "r.json"
    res.save(path)
    return path


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--task", "sentiment", "--ids", ""], "no demonstrations"),
        (["--task", "sentiment", "--demos", "101"], "larger than the pool (100"),
        (["--task", "sentiment", "--ids", "1,2", "--method", "nope"], "valid: detail, loo"),
        (["--task", "sentiment", "--ids", "1,2", "--method", "detail"], "use 'loo' or 'shapley'"),
        (["--task", "sentiment", "--ids", "1,x"], "comma-separated pool ids"),
        (["--task", "sentiment", "--ids", "1,200"], "outside the pool"),
        (["--task", "sentiment"], "no prompt"),
        (["--task", "sentiment", "--ids", "1,2", "--method", "loo", "--layer", "3"], "layer"),
    ],
)
def test_cli_bad_input_one_line_exit_2_no_report(tmp_path, fake_cli, args, needle):
    result = runner.invoke(app, ["attribute", *args, "--out", str(tmp_path / "o")])
    _one_line_error(result, needle)
    assert not (tmp_path / "o").exists()


def test_cli_result_from_another_task_or_model(tmp_path, fake_cli):
    task = get_task("sentiment")
    pool = list(task.pool)
    pool[7] = Example("something else entirely", "positive", "z")
    other = _result_file(tmp_path, task, pool_override=pool)
    _one_line_error(
        runner.invoke(
            app, ["attribute", str(other), "--method", "loo", "--out", str(tmp_path / "o")]
        ),
        "from another task",
    )
    wrong_model = _result_file(tmp_path, task, model="gpt-7")
    _one_line_error(
        runner.invoke(
            app, ["attribute", str(wrong_model), "--method", "loo", "--out", str(tmp_path / "o")]
        ),
        "made with model 'gpt-7'",
    )
    assert not (tmp_path / "o").exists()


def test_cli_loo_and_shapley_with_a_fake_model_write_the_report(tmp_path, fake_cli):
    path = _result_file(tmp_path, get_task("sentiment"))
    for method in ("loo", "shapley"):
        out = tmp_path / method
        result = runner.invoke(
            app,
            ["attribute", str(path), "--method", method, "--permutations", "3", "--no-cache"] * 1
            + ["--out", str(out)],
        )
        if method == "loo":  # --permutations is Shapley's
            _one_line_error(result, "does not take max_permutations")
            result = runner.invoke(
                app, ["attribute", str(path), "--method", method, "--no-cache", "--out", str(out)]
            )
        assert result.exit_code == 0, result.output
        assert {p.name for p in out.iterdir()} == {
            "attribution.json",
            "attribution.md",
            "attribution.html",
        }
        data = json.loads((out / "attribution.json").read_text())
        assert data["method"] == method and len(data["demos"]) == 3


def test_shapley_estimate_matches_exact_shapley_values(task):
    """k = 3: the exact values by enumerating all 8 coalitions, against the Monte Carlo ones."""
    from itertools import combinations
    from math import factorial

    from iclopt.evaluation import Evaluator

    prompt = Prompt(None, (0, 7, 3))  # a game where every coalition has its own value
    ev = Evaluator(task, FakeLLM())
    attr = Shapley(llm=FakeLLM(), max_permutations=3000, tolerance=None, seed=0).attribute(
        task, prompt
    )

    def v(members):
        p = Prompt(None, tuple(d for j, d in enumerate(prompt.demos) if j in members))
        rows = ev.evaluate(p).per_example
        return float(np.mean(Shapley._per_query_values(rows, task.val, "logprob")))

    n = 3
    exact = np.zeros(n)
    for i in range(n):
        others = [j for j in range(n) if j != i]
        for size in range(n):
            for s in combinations(others, size):
                w = factorial(size) * factorial(n - size - 1) / factorial(n)
                exact[i] += w * (v(set(s) | {i}) - v(set(s)))
    assert np.all(np.abs(attr.scores - exact) <= 3 * attr.errors + 1e-9), (attr.scores, exact)
    assert np.abs(attr.scores - exact).max() < 0.1 * np.abs(exact).max()


def test_cli_demos_screens_seeded_pool_items(tmp_path, fake_cli):
    picks = []
    for run in ("a", "b"):
        out = tmp_path / run
        args = ["attribute", "--task", "sentiment", "--demos", "5", "--seed", "3"]
        result = runner.invoke(app, [*args, "--method", "loo", "--no-cache", "--out", str(out)])
        assert result.exit_code == 0, result.output
        data = json.loads((out / "attribution.json").read_text())
        picks.append(data["prompt"]["demos"])
    assert picks[0] == picks[1] and len(set(picks[0])) == 5
