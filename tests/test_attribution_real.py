"""Attribution on the real embedded SmolLM2-135M-Instruct."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from iclopt.attribution import Detail, LeaveOneOut
from iclopt.attribution._states import locate_demo_tokens
from iclopt.cli import app
from iclopt.data import Example, Task
from iclopt.datasets import get_task
from iclopt.prompts import Prompt, Template
from iclopt.results import OptimizationResult

pytestmark = pytest.mark.slow
runner = CliRunner()

ANIMALS = (
    "dog cat horse lion tiger rabbit elephant monkey zebra giraffe wolf bear mouse sheep goat "
    "camel donkey fox deer squirrel kangaroo leopard hippo panda cow pig duck owl eagle shark"
).split()
FRUITS = (
    "apple banana cherry mango peach pear grape lemon orange plum melon kiwi apricot papaya "
    "lime fig pineapple strawberry blueberry raspberry coconut watermelon grapefruit tangerine "
    "nectarine pomegranate guava lychee blackberry cranberry"
).split()


def animal_or_fruit() -> Task:
    """One word in, its category out: a task SmolLM2 knows, so a flipped label stands out."""
    ex = [Example(w, "animal", f"a{i}") for i, w in enumerate(ANIMALS)]
    ex += [Example(w, "fruit", f"f{i}") for i, w in enumerate(FRUITS)]
    order = np.random.default_rng(123).permutation(len(ex))
    ex = [ex[i] for i in order]
    return Task("animal_or_fruit", ex[:24], ex[24:40], [], "label_accuracy", ("animal", "fruit"))


def test_demo_tokens_come_from_offsets_and_prefix_kv_states_equal_plain(smol):
    task = get_task("sentiment")
    demos = [task.pool[i] for i in (0, 7, 3, 12, 5)]
    tmpl = Template()
    texts = [tmpl.render_text("Classify.", demos, q.input) for q in task.val[:5]]
    prefixes = [tmpl.render_text("Classify.", demos[:j], d.input) for j, d in enumerate(demos)]
    found = locate_demo_tokens(smol.token_offsets(texts[0]), texts[0], prefixes)
    tokens = smol.tokenizer.convert_ids_to_tokens(smol.encode([texts[0]])[0])
    assert [tokens[p] for p in found.positions] == [":"] * 5  # ":" of "Output:"
    assert found.answer_tokens == [" " + d.target for d in demos]
    before = smol.tokens_fed
    demo_kv, last_kv, fed_kv = smol.prompt_states(texts, found.positions, 15)
    assert fed_kv == smol.tokens_fed - before  # the backend's own token accounting
    plain = smol.hidden_states(texts, layers=[15], positions=[[*found.positions, -1]] + [[-1]] * 4)
    np.testing.assert_allclose(demo_kv, plain[0][0, :-1], rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(last_kv[0], plain[0][0, -1], rtol=1e-4, atol=1e-3)
    for k in range(1, 5):
        np.testing.assert_allclose(last_kv[k], plain[k][0, 0], rtol=1e-4, atol=1e-3)
    assert fed_kv < sum(smol.count_tokens(texts)) / 2  # the shared demonstrations ran once


def test_detail_on_the_real_model_is_deterministic_and_layer_checked(smol):
    task = get_task("sentiment")
    prompt = Prompt(None, (0, 7, 3, 12, 5, 40))
    queries = task.val[:8]
    a = Detail(llm=smol, projection_dim=64, seed=0).attribute(task, prompt, queries)
    b = Detail(llm=smol, projection_dim=64, seed=0).attribute(task, prompt, queries)
    np.testing.assert_array_equal(a.scores, b.scores)
    assert a.config["layer"] == 15 and a.config["hidden_size"] == 576
    assert a.per_query.shape == (6, 8) and a.config["rank_by"] == "test"
    np.testing.assert_allclose(a.suspect, -a.scores)  # rank_by auto: test influence
    assert np.all(np.array(a.extra["self_influence"]) >= 0)
    c = Detail(llm=smol, rank_by="auto").attribute(task, prompt, queries=[])
    assert c.config["rank_by"] == "self" and np.all(c.suspect >= 0) and c.per_query is None
    from iclopt.errors import InputDataError

    with pytest.raises(InputDataError, match=r"must be an int in \[0, 30\]"):
        Detail(llm=smol, layer=31).attribute(task, prompt)


def _flip_last(task: Task, seed: int, k: int) -> tuple[Task, Prompt, int]:
    rng = np.random.default_rng(seed)
    ids = [int(i) for i in rng.choice(len(task.pool), k, replace=False)]
    pool = list(task.pool)
    ex = pool[ids[-1]]
    pool[ids[-1]] = Example(ex.input, "fruit" if ex.target == "animal" else "animal", ex.id)
    flipped = Task(task.name, pool, task.val, task.test, task.metric, task.labels)
    return flipped, Prompt(None, tuple(ids)), k - 1


def test_a_flipped_label_ranks_among_the_most_suspect_for_detail_and_loo(smol):
    """animal_or_fruit, 4 demonstrations, the last one's label flipped, seeds 0-3.

    Measured on SmolLM2: DETAIL ranks it first or second in every seed; leave-one-out in 3 of
    the 4 seeds (in seed 2 it is ranked third of four). In the middle of longer prompts
    neither method is as reliable on this model (docs/benchmarks.md).
    """
    task = animal_or_fruit()
    detail_ranks, loo_ranks = [], []
    for seed in range(4):
        t, prompt, flipped = _flip_last(task, seed, 4)
        d = Detail(llm=smol, rank_by="test").attribute(t, prompt)
        lo = LeaveOneOut(llm=smol).attribute(t, prompt)
        detail_ranks.append(d.ranking().index(flipped))
        loo_ranks.append(lo.ranking().index(flipped))
    assert max(detail_ranks) <= 1, detail_ranks
    assert sum(r <= 1 for r in loo_ranks) >= 3, loo_ranks


@pytest.fixture()
def result_file(tmp_path, smol):
    task = get_task("sentiment")
    pool = [{"input": ex.input, "output": ex.target} for ex in task.pool[:30]]
    pool[4]["input"] = "<script>alert('pwned')</script> Loved it, every minute."
    val = [{"input": ex.input, "output": ex.target} for ex in task.val[:4]]
    (tmp_path / "pool.json").write_text(json.dumps(pool))
    (tmp_path / "val.json").write_text(json.dumps(val))
    demos = (4, 0, 7)
    res = OptimizationResult(
        best=Prompt(None, demos),
        demos=[Example(pool[i]["input"], pool[i]["output"], id=str(i)) for i in demos],
        val_score=0.5,
        test_score=None,
        config={
            "task_source": {"pool": str(tmp_path / "pool.json"), "val": str(tmp_path / "val.json")},
            "sizes": {"pool": 30, "val": 4, "test": 0},
            "labels": ["negative", "positive"],
            "metric": "label_accuracy",
        },
        model=smol.identity,
        task="pool",
    )
    path = tmp_path / "r.json"
    res.save(path)
    return path


def test_cli_attribute_writes_the_three_files_with_smollm2(
    tmp_path, result_file, smol, monkeypatch
):
    import iclopt.cli.attribute as mod

    monkeypatch.setattr(mod, "load_llm", lambda model, **kw: smol)  # the session's SmolLM2
    cache = str(tmp_path / "results.sqlite")
    for method in ("detail", "loo", "shapley"):
        out = tmp_path / method
        args = ["attribute", str(result_file), "--method", method, "--out", str(out)]
        args += ["--cache", cache]
        if method == "shapley":
            args += ["--permutations", "3"]
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert {p.name for p in out.iterdir()} == {
            "attribution.json",
            "attribution.md",
            "attribution.html",
        }
        page = (out / "attribution.html").read_text()
        assert "<script>" not in page and "&lt;script&gt;alert(&#x27;pwned&#x27;)" in page
        assert page.count("<tr") == 4 and "data:image/png;base64," in page  # header + 3 bars
        data = json.loads((out / "attribution.json").read_text())
        assert data["method"] == method and [d["pool_id"] for d in data["demos"]] == [4, 0, 7]
        assert data["model"] == smol.identity
    bad = runner.invoke(
        app, ["attribute", str(result_file), "--layer", "99", "--out", str(tmp_path / "bad")]
    )
    assert bad.exit_code == 2 and "must be an int in [0, 30]" in bad.stderr
    assert len([ln for ln in bad.stderr.splitlines() if ln.strip()]) == 1
    assert not (tmp_path / "bad").exists()
