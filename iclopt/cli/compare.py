"""`iclopt compare`: baseline comparison over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from iclopt.cli._common import (
    O_K,
    O_QUIET,
    EvalOptions,
    InputDataError,
    LLMOptions,
    TaskOptions,
    app,
    build_task,
    describe,
    group,
    load_llm,
    one_line_errors,
    option_groups,
    out,
    progress_bar,
    quiet_libraries,
)
from iclopt.cli._feedback import Feedback


@app.command()
@one_line_errors
@option_groups
def compare(
    source: TaskOptions = group(),
    k: int = O_K,
    methods: str = typer.Option(
        "random,similarity,uncertainty,entropy,best-of-n",
        help="Comma-separated methods: selection baselines and search methods (see `iclopt methods`); a search gets the LLM calls of --budget validation evaluations.",
    ),
    seeds: int = typer.Option(
        3, min=1, help="Run each method with seeds 0 .. N-1; the table shows mean and std."
    ),
    budget: int = typer.Option(
        20,
        min=1,
        help="Validation evaluations (their LLM calls) for search methods (best-of-n, race, gp, ...).",
    ),
    backend: LLMOptions = group(),
    embedder: str = typer.Option(
        None,
        help="sentence-transformers model name or folder for retrieval methods (default: the offline all-MiniLM-L6-v2).",
    ),
    ev: EvalOptions = group(),
    out_dir: Path = typer.Option(
        ..., "--out", help="Folder for comparison.md, .csv, .json and the bar chart comparison.png."
    ),
    quiet: bool = O_QUIET,
) -> None:
    """Compare demonstration-selection methods over seeds: table (Markdown, CSV, JSON) and plot.

    Per-query methods (similarity, dpp, mdl) are scored with each query's own prompt.
    Costs count every LLM call a method makes, while choosing and while being scored.
    """
    from iclopt.api import compare as run_compare
    from iclopt.bandits import OPTIMIZERS
    from iclopt.errors import UnknownNameError
    from iclopt.selectors import SELECTORS

    quiet_libraries()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise InputDataError("--methods is empty")
    for name in names:
        if name not in SELECTORS and name not in OPTIMIZERS:
            valid = ", ".join(sorted(set(SELECTORS.names()) | set(OPTIMIZERS.names())))
            raise UnknownNameError(f"unknown method {name!r}; valid: {valid}")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputDataError(f"{out_dir}: exists and is not a directory")
    the_task = build_task(source, k=k)
    emb = None
    if embedder is not None:
        from iclopt.embedders import SentenceTransformerEmbedder

        emb = SentenceTransformerEmbedder(embedder).load()
    llm = load_llm(**backend.as_kwargs())
    describe(the_task, llm, ev.scoring)
    with progress_bar(quiet) as progress:
        bar = progress.add_task("comparing", total=len(names) * seeds, note="")

        def on_run(row: dict[str, Any]) -> None:
            test_s = "n/a" if row["test_score"] is None else f"{row['test_score']:.3f}"
            progress.update(
                bar, advance=1, note=f"{row['method']} seed {row['seed']}: test {test_s}"
            )

        result = run_compare(
            the_task,
            names,
            llm=llm,
            embedder=emb,
            k=k,
            seeds=seeds,
            budget=budget,
            template=ev.make_template(),
            scoring=ev.scoring.value,
            max_new_tokens=ev.max_new_tokens,
            cache=ev.cache_arg(),
            on_run=on_run,
        )
    from iclopt.reports.comparison import markdown_table

    paths = result.save(out_dir)
    if not quiet:
        out.print(markdown_table(result.summary), highlight=False, markup=False)
    Feedback(quiet).artifacts(
        {p.name: p for p in paths.values()}, headline="wrote", final="comparison.md"
    )
