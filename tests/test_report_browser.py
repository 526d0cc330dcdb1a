"""The run report from real runs of the embedded SmolLM2, opened in a real headless Chromium.

One small real run (`iclopt optimize --budget 2 --report --quiet`), a real comparison
(`iclopt compare --methods random --seeds 1`) and a real DETAIL attribution feed the page;
the browser checks that the figures rendered and that hostile dataset text stays text.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import warnings

import numpy as np
import pytest
from browser import browser, serve  # noqa: F401  (fixture)
from typer.testing import CliRunner

from iclopt.cli import app

pytestmark = pytest.mark.slow
runner = CliRunner()

#: Dataset text that would run, fetch or navigate if the page interpreted it.
HOSTILE = (
    "<script>window.__pwned = 1; alert('script'); fetch('/pwned-script')</script> "
    "<img src=x onerror=\"window.__pwned = 2; alert('img'); fetch('/pwned-img')\"> "
    "<a href=\"javascript:window.__pwned = 3; alert('link')\">click me</a>"
)


@pytest.fixture(scope="module")
def runs(tmp_path_factory, smol):
    """Real artifacts: result + report (optimize), comparison, attribution of the best prompt."""
    import torch

    import iclopt.cli.attribute
    import iclopt.cli.compare
    import iclopt.cli.optimize

    d = tmp_path_factory.mktemp("runs")
    cache = str(d / "cache.sqlite")  # fresh: the model really runs
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pytest.MonkeyPatch.context() as mp:
            for mod in (iclopt.cli.optimize, iclopt.cli.compare, iclopt.cli.attribute):
                mp.setattr(mod, "load_llm", lambda model, **kw: smol)  # the session's SmolLM2
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                opt = runner.invoke(
                    app,
                    [
                        *["optimize", "--task", "sentiment", "--k", "3", "--budget", "2"],
                        *["--seed", "0", "--out", str(d / "r.json"), "--report", "--quiet"],
                        *["--cache", cache],
                    ],
                )
            assert opt.exit_code == 0, opt.output
            cmp = runner.invoke(
                app,
                [
                    *["compare", "--task", "sentiment", "--methods", "random", "--seeds", "1"],
                    *["--k", "3", "--out", str(d / "cmp"), "--cache", cache, "--quiet"],
                ],
            )
            assert cmp.exit_code == 0, cmp.output
            attr = runner.invoke(
                app, ["attribute", str(d / "r.json"), "--out", str(d / "attr"), "--quiet"]
            )
            assert attr.exit_code == 0, attr.output
    finally:
        torch.set_num_threads(threads)
    return {"dir": d, "optimize": opt, "warnings": caught}


def test_optimize_report_quiet_prints_only_the_page_and_no_library_warning(runs):
    d, opt = runs["dir"], runs["optimize"]
    assert opt.stdout == f"{d / 'r.html'}\n"
    assert opt.stderr == ""
    assert not [
        w for w in runs["warnings"] if issubclass(w.category, (FutureWarning, DeprecationWarning))
    ]
    page = (d / "r.html").read_text()
    assert re.findall(r'data-figure="(\w+)"', page) == ["scores", "trace"]
    result = json.loads((d / "r.json").read_text())
    # the default search: the calls of 2 evaluations (20 queries x 2 labels) in partial ones
    assert result["cost"]["llm_calls"] > 0
    assert sum(e["calls"] for e in result["trace"]) <= 2 * 20 * 2 < 10 * len(result["trace"])
    assert any(e["n_queries"] < 20 for e in result["trace"])


def _png_sizes(page: str) -> dict[str, tuple[int, int]]:
    sizes = {}
    for name, data in re.findall(
        r'data-figure="(\w+)"[^>]*src="data:image/png;base64,([^"]+)"', page
    ):
        png = base64.b64decode(data)
        sizes[name] = (int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big"))
    return sizes


def _open(driver, url: str) -> None:
    driver.set_window_size(1200, 900)
    driver.get(url)
    height = driver.execute_script("return document.documentElement.scrollHeight")
    driver.set_window_size(1200, min(int(height) + 40, 8000))


def _no_alert(driver) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018  (raises when no alert is open)


def test_report_of_real_runs_renders_its_figures_in_chromium(runs, browser, tmp_path):  # noqa: F811
    from PIL import Image

    d = runs["dir"]
    site = tmp_path / "site"
    result = runner.invoke(
        app,
        [
            *["report", str(d / "r.json"), "--compare", str(d / "cmp")],
            *["--attribution", str(d / "attr" / "attribution.json")],
            *["--out", str(site / "report.html")],
        ],
    )
    assert result.exit_code == 0, result.output
    page = (site / "report.html").read_text()
    expected = _png_sizes(page)
    assert list(expected) == ["scores", "trace", "attribution"]
    with serve(site) as (url, requested):
        _open(browser, f"{url}/report.html")
        shot = Image.open(io.BytesIO(browser.get_screenshot_as_png())).convert("RGB")
        if os.environ.get("ICLOPT_SCREENSHOT"):  # for the README: ICLOPT_SCREENSHOT=docs/x.png
            shot.save(os.environ["ICLOPT_SCREENSHOT"])
        images = browser.execute_script(
            "return [...document.images].map(i => ({name: i.dataset.figure,"
            " w: i.naturalWidth, h: i.naturalHeight, complete: i.complete,"
            " box: i.getBoundingClientRect().toJSON()}))"
        )
        assert [i["name"] for i in images] == list(expected)
        for img in images:
            assert img["complete"] and (img["w"], img["h"]) == expected[img["name"]], img
            box = img["box"]
            assert box["width"] > 300 and box["height"] > 150, img
            assert abs(box["width"] / box["height"] - img["w"] / img["h"]) < 0.02, img
            # the same region of the page screenshot: a drawn figure, not a blank box
            crop = shot.crop(
                (
                    int(box["x"]),
                    int(box["y"]),
                    int(box["x"] + box["width"]),
                    int(box["y"] + box["height"]),
                )
            )
            assert crop.size[0] > 300 and crop.size[1] > 150
            pixels = np.asarray(crop, dtype=int).reshape(-1, 3)
            ink = float((pixels.sum(axis=1) < 600).mean())
            colors = len(np.unique(pixels, axis=0))
            assert ink > 0.01 and colors > 20, (img["name"], ink, colors)  # blank: 0
            # drawn to the bottom (a cut-off image leaves its lower part blank)
            lower = np.asarray(crop, dtype=int)[crop.size[1] // 2 :].reshape(-1, 3)
            assert (lower.sum(axis=1) < 600).mean() > 0.01, img["name"]
        text = browser.find_element("tag name", "body").text
        assert "1. The final prompt, as the model sees it" in text and "Output:" in text
        assert "random (compare)" in text
        assert "Try the prompt" in text or "Nothing to fix" in text
        _no_alert(browser)
    assert requested == ["/report.html"]  # nothing fetched beyond the page


def test_hostile_dataset_text_shows_as_text_and_runs_nothing(runs, browser, tmp_path):  # noqa: F811
    d = runs["dir"]
    result = json.loads((d / "r.json").read_text())
    result["prompt"]["instruction"] = HOSTILE
    result["prompt"]["demos"][0]["input"] = HOSTILE
    result["prompt"]["demos"][1]["output"] = "<b>bold?</b> [x](javascript:alert(1))"
    attribution = json.loads((d / "attr" / "attribution.json").read_text())
    attribution["demos"][0]["input"] = HOSTILE
    (tmp_path / "r.json").write_text(json.dumps(result))
    (tmp_path / "a.json").write_text(json.dumps(attribution))
    site = tmp_path / "site"
    out = runner.invoke(
        app,
        [
            *["report", str(tmp_path / "r.json"), "--attribution", str(tmp_path / "a.json")],
            *["--out", str(site / "report.html")],
        ],
    )
    assert out.exit_code == 0, out.output
    with serve(site) as (url, requested):
        _open(browser, f"{url}/report.html")
        _no_alert(browser)
        assert browser.execute_script("return window.__pwned === undefined")
        dom = browser.execute_script(
            "return {scripts: document.scripts.length,"
            " links: [...document.querySelectorAll('a[href]')].map(a => a.href),"
            " imgs: [...document.images].filter(i => !i.dataset.figure).length}"
        )
        assert dom["scripts"] == 0 and dom["links"] == [] and dom["imgs"] == 0
        text = browser.find_element("tag name", "body").text
        # shown as text: in the prompt (instruction and demo) and in the attribution table
        assert text.count("<script>window.__pwned = 1;") >= 3
        assert "<img src=x onerror=" in text and 'href="javascript:' in text
        assert "<b>bold?</b> [x](javascript:alert(1))" in text
        _no_alert(browser)
    assert requested == ["/report.html"]  # no fetch('/pwned-...'), no image request
