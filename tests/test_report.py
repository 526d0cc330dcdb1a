"""The run report and the attribution page: what a person sees, without a model.

Results are crafted here to reach every case (old and new trace entries, partial
evaluations, scores outside [0, 1], no baseline); the real-model runs and the browser are
in tests/test_report_browser.py.
"""

from __future__ import annotations

import json
import os
import re
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

from iclopt.attribution import Attribution
from iclopt.cli import app
from iclopt.datasets import get_task
from iclopt.evaluation import Cost
from iclopt.prompts import Prompt
from iclopt.reports.attribution import (
    advice,
    markdown_report,
    readable_scale,
    render_attribution,
    verdicts,
    write_attribution,
)
from iclopt.reports.run import html_run_report, trace_figure, write_run_report
from iclopt.reports.run_data import is_partial, score_rows, trace_points
from iclopt.results import OptimizationResult

runner = CliRunner()
TASK = get_task("sentiment")
DEMOS = (3, 7, 12)


def _entry(step, score, source="random", **extra):
    e = {
        "step": step,
        "instruction": None,
        "demos": [step, step + 1, step + 2],
        "score": score,
        "queries": "val",
        "source": source,
        "info": {"source": source},
        "llm_calls": 40,
        "prompt_tokens": 4000,
        "cache_hits": 0,
        "seconds": 1.5,
        "optimizer_seconds": 0.001,
    }
    e.update(extra)
    return e


def _result(trace=None, val_score=0.8, test_score=0.7, method="neural"):
    if trace is None:
        trace = [
            _entry(0, 0.55, "initial"),  # an old entry: no n_queries, val, signal
            _entry(1, 0.65, "initial"),
            _entry(2, 0.80, "ot", n_queries=20, val=list(range(20)), signal=-0.4),
            _entry(3, 0.95, "local", n_queries=5, val=[0, 1, 2, 3, 4], signal=-0.2),  # partial
            _entry(4, 0.70, "rescore", queries=[50, 51, 52]),  # partial: other queries
        ]
    return OptimizationResult(
        best=Prompt("Classify the review.", DEMOS),
        demos=[TASK.pool[i] for i in DEMOS],
        val_score=val_score,
        test_score=test_score,
        trace=trace,
        cost={"evaluations": 5, "llm_calls": 200, "prompt_tokens": 20000, "cache_hits": 0},
        test_cost={"evaluations": 1, "llm_calls": 80, "prompt_tokens": 8000, "cache_hits": 0},
        config={"method": method, "k": 3, "seed": 0, "sizes": {"pool": 100, "val": 20, "test": 40}},
        model="fake-llm-v1",
        task=TASK.name,
    )


def _attr(method="loo", scores=(0.05, -0.15, 0.1), **kw):
    return Attribution(
        method=method,
        task=TASK.name,
        model="fake-llm-v1",
        prompt=Prompt("Classify the review.", DEMOS),
        demos=[TASK.pool[i] for i in DEMOS],
        scores=np.array(scores, dtype=float),
        query_ids=[f"q{i}" for i in range(20)],
        cost=Cost(evaluations=4, llm_calls=160, prompt_tokens=9000, seconds=3.0),
        **kw,
    )


# ---------------------------------------------------------------------- the trace
def test_partial_entries_are_those_on_fewer_or_other_queries():
    res = _result()
    flags = [is_partial(e, 20) for e in res.trace]
    assert flags == [False, False, False, True, True]
    assert not is_partial({"score": 1.0}, 20)  # the oldest entries: neither key
    assert not is_partial(_entry(0, 0.5, n_queries=5), None)  # no size known: not partial


def test_trace_figure_draws_partial_evaluations_hollow_and_keeps_them_off_the_best_line():
    points = trace_points(_result())
    assert [p["x"] for p in points] == [40, 80, 120, 160, 200]  # cumulative LLM calls
    fig = trace_figure(points, by_calls=True)
    ax = fig.axes[0]
    by_label = {c.get_label(): c for c in ax.collections}
    hollow = [
        lab
        for lab, c in by_label.items()
        if len(c.get_facecolors()) == 0 or c.get_facecolors()[:, 3].max() == 0
    ]
    assert sorted(hollow) == ["local (partial)", "rescore (partial)"]
    assert {"initial", "ot"} <= set(by_label) - set(hollow)
    best = next(line for line in ax.get_lines() if line.get_label() == "best so far")
    # the partial 0.95 (5 queries) is not the best so far: 0.80 on the full set is
    assert max(best.get_ydata()) == pytest.approx(0.80)
    assert len(fig.axes) == 2  # the entries with a signal get their own panel
    fig.clf()


def test_scores_outside_zero_one_are_plotted_on_their_own_range():
    trace = [_entry(0, -3.5), _entry(1, 12.0), _entry(2, 4.0)]
    fig = trace_figure(trace_points(_result(trace)), by_calls=True)
    low, high = fig.axes[0].get_ylim()
    assert low < -3.5 and high > 12.0
    fig.clf()
    page = html_run_report(_result(trace, val_score=12.0, test_score=9.5))
    assert "12.000" in page and 'data-figure="trace"' in page


# ---------------------------------------------------------------------- the baseline
def test_random_baseline_comes_from_the_trace_or_the_comparison_and_says_so():
    res = _result()
    rows, why = score_rows(res)
    rnd = next(r for r in rows if r.name.startswith("random"))
    assert rnd.val == pytest.approx(0.60) and rnd.test is None  # the two initial prompts
    assert "validation set only" in why

    cmp = {
        "task": TASK.name,
        "summary": [
            {
                "method": "random",
                "val_mean": 0.5,
                "val_std": 0.1,
                "test_mean": 0.45,
                "test_std": 0.05,
                "runs": 3,
            },
            {
                "method": "best-of-n",
                "val_mean": 0.7,
                "val_std": 0.02,
                "test_mean": 0.6,
                "test_std": 0.03,
                "runs": 3,
            },
        ],
    }
    rows, why = score_rows(res, cmp)
    assert [r.name for r in rows] == [
        "this run (neural)",
        "random prompts (this search)",
        "random (compare)",
        "best-of-n (compare)",
    ]
    assert 'the comparison\'s "random" row' in why

    no_random = _result([_entry(0, 0.7, "ot"), _entry(1, 0.8, "local")])
    rows, why = score_rows(no_random)
    assert len(rows) == 1 and "holds no random-prompt baseline" in why
    assert "holds no random-prompt baseline" in html_run_report(no_random)


# ---------------------------------------------------------------------- the page
def test_page_sections_in_order_self_contained_config_folded_last():
    page = html_run_report(_result(), attribution=_attr())
    order = [
        page.index(f'<h2 id="{s}">') for s in ("prompt", "scores", "trace", "attribution", "cost")
    ]
    assert order == sorted(order)
    assert page.index('<details id="config">') > order[-1]
    assert page.rstrip().endswith("</html>")
    # the prompt as the model sees it: instruction, the demos in order, the query slot
    prompt = page[page.index('<pre class="prompt">') : page.index("</pre>")]
    assert prompt.index("Classify the review.") < prompt.index(
        TASK.pool[3].input.replace("'", "&#x27;")
    )
    assert prompt.rstrip().endswith("Input: {your input}\nOutput:")
    # nothing to fetch: every src is inlined, no link, no script
    assert all(src.startswith("data:") for src in re.findall(r'src="([^"]*)"', page))
    assert "<script" not in page and 'href="http' not in page
    assert re.findall(r'data-figure="(\w+)"', page) == ["scores", "trace", "attribution"]
    assert "2 partial" in page and "(partial)" in page


def test_markdown_report_writes_its_figures_beside_it(tmp_path):
    paths = write_run_report(_result(), tmp_path / "out" / "run.md", attribution=_attr())
    assert [p.name for p in paths] == [
        "run.md",
        "run.scores.png",
        "run.trace.png",
        "run.attribution.png",
    ]
    text = paths[0].read_text()
    for p in paths[1:]:
        assert f"]({p.name})" in text and p.read_bytes().startswith(b"\x89PNG")
    assert text.index("## 1.") < text.index("## 5.") < text.index("<details><summary>configuration")


# ---------------------------------------------------------------------- attribution page
def _numeric_columns(md_text):
    rows = [ln for ln in md_text.splitlines() if ln.startswith("| ") and "---" not in ln]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in rows[1:]]
    head = [c.strip() for c in rows[0].strip("|").split("|")]
    cols = {}
    for j, name in enumerate(head):
        vals = []
        for row in cells:
            m = re.match(r"^\\?([+−-]?)(\d+(?:\.\d+)?)", row[j].replace("\\+", "+"))
            if m is None:
                break
            vals.append(float(m.group(2)) * (-1 if m.group(1) in "−-" and m.group(1) else 1))
        else:
            cols[name] = vals
    return cols


def test_attribution_scales_read_as_points_percent_or_share():
    loo = _attr(config={"utility": "metric"}, extra={"v_all": 0.8})
    assert [loo_fmt for loo_fmt in map(readable_scale(loo).fmt, range(3))] == [
        "+5.0 pts",
        "−15.0 pts",
        "+10.0 pts",
    ]
    lp = _attr(
        method="shapley",
        scores=(np.log(1.2), np.log(0.5), 0.0),
        errors=np.array([0.01, 0.01, 0.01]),
        config={"utility": "logprob"},
    )
    assert readable_scale(lp).fmt(0).startswith("+20.0 %")
    assert readable_scale(lp).fmt(1).startswith("−50.0 %")
    detail = _attr(
        method="detail",
        scores=(6.664e-05, -2.0e-05, 1.2e-05),
        suspect=np.array([-6.664e-05, 2.0e-05, -1.2e-05]),
        config={"rank_by": "test", "lambda": 171.9},
        extra={"self_influence": [1e-5, 9e-5, 1.1e-5]},
    )
    scale = readable_scale(detail)
    assert sum(abs(v) for v in scale.values) == pytest.approx(100)
    md_text = markdown_report(detail)
    assert not re.search(r"\de-0\d", md_text.split("<details>")[0])  # no 6.664e-05 above the fold
    cols = _numeric_columns(md_text)
    assert "share of the influence, %" in cols and "self influence, × median" in cols
    names = [n for n in cols if n not in ("#", "pool id")]
    for a in names:  # no column repeats another, sign flipped or not
        for b in names:
            if a != b:
                assert not np.allclose(cols[a], [-x for x in cols[b]]), (a, b)
                assert not np.allclose(cols[a], cols[b]), (a, b)
    assert len(names) == 2


def test_attribution_advice_one_sentence_and_parameters_folded_at_the_end(tmp_path):
    attr = _attr(config={"utility": "metric", "scoring": "labels"})
    assert attr.flagged == [1]
    assert verdicts(attr) == ["helps", "hurts", "helps"]
    sentence = advice(attr)
    assert sentence.startswith("Try the prompt without #2 (pool 7)")
    assert sentence.count(". ") == 0 and sentence.endswith(".")
    clean = _attr(scores=(0.1, 0.2, 0.05), config={"utility": "metric"})
    assert advice(clean).startswith("Nothing to fix")
    paths = write_attribution(attr, tmp_path / "a")
    page = paths["html"].read_text()
    assert page.index('class="advice"') < page.index("<table>") < page.index("<details>")
    assert page.index("scoring") > page.index("<details>")  # internal parameters: folded
    assert "Try the prompt without #2 (pool 7)" in page
    again = Attribution.load(paths["json"])  # re-rendered from the file: the same page
    assert write_attribution(again, tmp_path / "b")["html"].read_text() == page


@pytest.mark.parametrize(
    "kw",
    [
        {"config": {"utility": "metric"}},
        {
            "method": "detail",
            "suspect": np.array([1.0, 3.0, 0.5]),
            "config": {"rank_by": "self"},
            "extra": {"self_influence": [1.0, 3.0, 0.5]},
        },
    ],
)
def test_a_saved_attribution_json_re_renders_to_the_same_files(tmp_path, kw):
    paths = _attr(**kw).save(tmp_path / "a")
    data = json.loads(paths["json"].read_text(encoding="utf-8"))  # no Attribution object
    again = render_attribution(data)
    for kind in ("json", "md", "html"):
        assert again[kind] == paths[kind].read_text(encoding="utf-8"), kind
    assert markdown_report(data) == paths["md"].read_text(encoding="utf-8")


def test_score_labels_come_from_the_attributor_class(tmp_path):
    from iclopt.attribution import ATTRIBUTORS

    for name in ATTRIBUTORS:
        cls = ATTRIBUTORS.get(name)
        labels = _attr(method=name).as_dict()["labels"]
        assert labels == {"scale": cls.score_scale, "measure": cls.score_measure}
    data = _attr(config={"utility": "metric"}).as_dict()
    data["labels"] = {"scale": "change", "measure": "what a toy method measures"}
    assert readable_scale(data).explain.startswith("What a toy method measures, in points")
    data["labels"] = {"scale": "share", "measure": "a toy influence"}
    assert readable_scale(data).header == "share of the influence, %"
    unknown = _attr(method="toy", config={"utility": "metric"}).as_dict()
    assert unknown["labels"]["scale"] == "change"  # a name no attributor has: the defaults
    write_attribution(unknown, tmp_path / "toy")


def test_self_influence_flags_read_as_a_label_to_check():
    attr = _attr(
        method="detail",
        scores=(1.0, 2.0, 0.5, 0.7, 0.9),
        suspect=np.array([1.0, 1.05, 9.0, 0.95, 1.0]),
        config={"rank_by": "self"},
        extra={"self_influence": [1.0, 1.05, 9.0, 0.95, 1.0]},
    )
    attr.prompt = Prompt(None, (3, 7, 12, 20, 21))
    attr.demos = [TASK.pool[i] for i in attr.prompt.demos]
    assert attr.flagged == [2]
    assert verdicts(attr)[2] == "looks mislabeled"
    assert advice(attr).startswith("Check the label of #3 (pool 12)")


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_artifacts_get_the_umask_mode_not_0600(tmp_path, umask):
    from iclopt.api import ComparisonResult

    old = os.umask(umask)
    try:
        res = _result()
        res.save(tmp_path / "r.json")
        write_attribution(_attr(config={"utility": "metric"}), tmp_path / "attr")
        write_run_report(res, tmp_path / "r.html")
        cmp = ComparisonResult(TASK.name, "m", 3, [0])
        cmp.runs = [
            {
                "method": "random",
                "seed": 0,
                "val_score": 0.5,
                "test_score": 0.4,
                "llm_calls": 1,
                "prompt_tokens": 1,
                "cache_hits": 0,
                "seconds": 0.1,
            }
        ]
        cmp.save(tmp_path / "cmp")
    finally:
        os.umask(old)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 9
    for p in files:
        assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask, p
    assert not [p for p in files if p.name.startswith(".")]  # no temporary file left


# ---------------------------------------------------------------------- the command
def test_report_command_needs_no_model_and_quiet_prints_only_the_path(tmp_path, monkeypatch):
    import iclopt.llms
    from iclopt.llms.hf import HFModel

    def no_model(*a, **k):
        raise AssertionError("the report loaded a model")

    monkeypatch.setattr(iclopt.llms, "get_llm", no_model)
    monkeypatch.setattr(HFModel, "load", no_model)
    _result().save(tmp_path / "r.json")
    write_attribution(_attr(config={"utility": "metric"}), tmp_path / "attr")
    cmp_dir = tmp_path / "cmp"
    cmp_dir.mkdir()
    (cmp_dir / "comparison.json").write_text(
        json.dumps(
            {
                "task": TASK.name,
                "model": "fake-llm-v1",
                "k": 3,
                "seeds": [0, 1],
                "summary": [
                    {
                        "method": "random",
                        "val_mean": 0.5,
                        "val_std": 0.1,
                        "test_mean": 0.4,
                        "test_std": 0.1,
                        "runs": 2,
                    }
                ],
            }
        )
    )
    out = tmp_path / "rep" / "report.html"
    args = [
        "report",
        str(tmp_path / "r.json"),
        "--compare",
        str(cmp_dir),
        "--attribution",
        str(tmp_path / "attr" / "attribution.json"),
        "--out",
        str(out),
    ]
    result = runner.invoke(app, [*args, "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{out}\n" and result.stderr == ""
    page = out.read_text()
    assert "random (compare)" in page and "Try the prompt without #2 (pool 7)" in page
    loud = runner.invoke(app, args)
    assert loud.exit_code == 0 and "report" in loud.stderr and str(out) in loud.stderr


def test_a_folder_artifact_moves_into_place_whole_or_not_at_all(tmp_path):
    from iclopt.artifacts import staged_folder

    with pytest.raises(RuntimeError), staged_folder(tmp_path / "m") as tmp:
        (tmp / "half.bin").write_bytes(b"\x00")
        raise RuntimeError("the export failed")
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary one
    (tmp_path / "empty").mkdir()
    with staged_folder(tmp_path / "empty") as tmp:  # an empty folder is replaced
        (tmp / "config.json").write_text("{}")
    assert (tmp_path / "empty" / "config.json").is_file()
    with staged_folder(tmp_path / "empty", keep_existing=True) as tmp:  # another won the race
        (tmp / "other.json").write_text("{}")
    assert sorted(p.name for p in (tmp_path / "empty").iterdir()) == ["config.json"]
    with pytest.raises(OSError), staged_folder(tmp_path / "empty") as tmp:
        (tmp / "other.json").write_text("{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty"]
