"""`iclopt compare`: baseline comparison over seeds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from iclopt.cli._common import (
    O_API_KEY_ENV,
    O_BASE_URL,
    O_CACHE,
    O_CONCURRENCY,
    O_DATA,
    O_INPUT_COL,
    O_K,
    O_KEEP_OVERLAP,
    O_LABELS,
    O_MAX_NEW_TOKENS,
    O_MAX_RETRIES,
    O_METRIC,
    O_MODEL,
    O_NO_CACHE,
    O_OUTPUT_COL,
    O_POOL,
    O_POOL_SIZE,
    O_QUIET,
    O_SCORING,
    O_SPLIT_SEED,
    O_TASK,
    O_TEMPLATE,
    O_TEST,
    O_TEST_SIZE,
    O_TIMEOUT,
    O_VAL,
    O_VAL_SIZE,
    InputDataError,
    ScoringMode,
    TemplateStyle,
    app,
    build_task,
    cache_arg,
    describe,
    load_llm,
    one_line_errors,
    out,
    progress_bar,
    quiet_libraries,
)
from iclopt.cli._feedback import Feedback


@app.command()
@one_line_errors
def compare(
    task: str = O_TASK,
    pool: str = O_POOL,
    val: str = O_VAL,
    test: str = O_TEST,
    data: str = O_DATA,
    input_col: str = O_INPUT_COL,
    output_col: str = O_OUTPUT_COL,
    pool_size: int = O_POOL_SIZE,
    val_size: int = O_VAL_SIZE,
    test_size: int = O_TEST_SIZE,
    split_seed: int = O_SPLIT_SEED,
    labels: str = O_LABELS,
    metric: str = O_METRIC,
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
    model: str = O_MODEL,
    base_url: str = O_BASE_URL,
    api_key_env: str = O_API_KEY_ENV,
    concurrency: int = O_CONCURRENCY,
    timeout: float = O_TIMEOUT,
    max_retries: int = O_MAX_RETRIES,
    embedder: str = typer.Option(
        None,
        help="sentence-transformers model name or folder for retrieval methods (default: the offline all-MiniLM-L6-v2).",
    ),
    template: TemplateStyle = O_TEMPLATE,
    scoring: ScoringMode = O_SCORING,
    max_new_tokens: int = O_MAX_NEW_TOKENS,
    keep_overlap: bool = O_KEEP_OVERLAP,
    cache: Path = O_CACHE,
    no_cache: bool = O_NO_CACHE,
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
    from iclopt.prompts import Template
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
    the_task = build_task(
        task,
        pool,
        val,
        test,
        data,
        input_col,
        output_col,
        pool_size,
        val_size,
        test_size,
        split_seed,
        labels,
        metric,
        k,
        keep_overlap=keep_overlap,
    )
    emb = None
    if embedder is not None:
        from iclopt.embedders import SentenceTransformerEmbedder

        emb = SentenceTransformerEmbedder(embedder).load()
    llm = load_llm(
        model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
    )
    describe(the_task, llm, scoring)
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
            template=Template(style=template.value),
            scoring=scoring.value,
            max_new_tokens=max_new_tokens,
            cache=cache_arg(cache, no_cache),
            on_run=on_run,
        )
    from iclopt.reports.comparison import markdown_table

    paths = result.save(out_dir)
    if not quiet:
        out.print(markdown_table(result.summary), highlight=False, markup=False)
    Feedback(quiet).artifacts(
        {p.name: p for p in paths.values()}, headline="wrote", final="comparison.md"
    )
