"""`iclopt optimize`: search the best prompt for a task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from iclopt.bandits import DEFAULT_METHOD
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
    err,
    load_llm,
    one_line_errors,
    print_result,
    progress_bar,
    quiet_libraries,
    read_instructions,
)


@app.command()
@one_line_errors
def optimize(
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
    budget: int = typer.Option(
        60,
        min=1,
        help="Validation evaluations the search may spend (each scores one prompt on every validation query).",
    ),
    method: str = typer.Option(
        DEFAULT_METHOD,
        help="Search method: neural, ease, gp, tpe or best-of-n (see `iclopt methods`).",
    ),
    model: str = O_MODEL,
    base_url: str = O_BASE_URL,
    api_key_env: str = O_API_KEY_ENV,
    concurrency: int = O_CONCURRENCY,
    timeout: float = O_TIMEOUT,
    max_retries: int = O_MAX_RETRIES,
    seed: int = typer.Option(0, help="Seed of the search."),
    instruction: list[str] = typer.Option(
        None,
        help="Candidate instruction (repeat for several; searched jointly with the exemplars).",
    ),
    instructions_file: Path = typer.Option(
        None, help="File with one candidate instruction per line."
    ),
    generate_instructions: int = typer.Option(
        0,
        min=0,
        help="Also let the LLM propose this many instructions from random demonstrations (APE-style; charged to the budget, cached, de-duplicated).",
    ),
    n_init: int = typer.Option(
        None,
        min=1,
        help="Initial random design of the model-based methods (default: 40/165 of the budget).",
    ),
    embedder: str = typer.Option(
        None,
        help="Sentence encoder of the model-based methods: a sentence-transformers model name or folder (default: the embedded all-MiniLM-L6-v2).",
    ),
    template: TemplateStyle = O_TEMPLATE,
    scoring: ScoringMode = O_SCORING,
    max_new_tokens: int = O_MAX_NEW_TOKENS,
    keep_overlap: bool = O_KEEP_OVERLAP,
    max_llm_calls: int = typer.Option(
        None, min=1, help="Optional hard cap on LLM calls (cache hits are free)."
    ),
    max_prompt_tokens: int = typer.Option(
        None, min=1, help="Optional hard cap on prompt tokens sent to the LLM."
    ),
    cache: Path = O_CACHE,
    no_cache: bool = O_NO_CACHE,
    out_path: Path = typer.Option(
        None, "--out", help="Write the JSON result (prompt, scores, cost, trace, config) here."
    ),
    quiet: bool = O_QUIET,
) -> None:
    """Search the best instruction + ordered exemplars for a task and report its scores.

    Give the task as --task NAME, as --pool, --val and --test files, or as one --data file.
    """
    from iclopt.api import optimize as run_optimize
    from iclopt.bandits import OPTIMIZERS
    from iclopt.bandits.model_based import ModelBasedOptimizer
    from iclopt.instructions import dedupe_instructions
    from iclopt.prompts import Template

    quiet_libraries()
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
    cls = OPTIMIZERS.get(method)
    if n_init is not None and n_init > budget:
        raise InputDataError(
            f"--budget {budget} is smaller than the initial design (--n-init {n_init})"
        )
    if issubclass(cls, ModelBasedOptimizer):
        cls.check_dependencies(embedder)
    cands = read_instructions(instruction, instructions_file)
    if instruction or instructions_file is not None:
        if not dedupe_instructions(cands):
            raise InputDataError("the instruction list is empty after de-duplication")
    else:
        cands = None
    if out_path is not None and out_path.is_dir():
        raise InputDataError(f"{out_path}: is a directory; --out needs a file path")
    llm = load_llm(
        model,
        base_url=base_url,
        api_key_env=api_key_env,
        concurrency=concurrency,
        timeout=timeout,
        max_retries=max_retries,
    )
    describe(the_task, llm, scoring)
    best = [float("-inf")]
    with progress_bar(quiet) as progress:
        bar = progress.add_task("searching", total=budget, note="")

        def on_step(entry: Any, ev: Any) -> None:
            if entry.on_val:
                best[0] = max(best[0], entry.score)
            src = entry.info.get("source") or ""
            progress.update(bar, advance=1, note=f"best val {best[0]:.3f} ({src})")

        result = run_optimize(
            the_task,
            llm=llm,
            k=k,
            budget=budget,
            method=method,
            seed=seed,
            instructions=cands,
            generate_instructions=generate_instructions,
            n_init=n_init,
            embedder=embedder,
            template=Template(style=template.value),
            scoring=scoring.value,
            max_new_tokens=max_new_tokens,
            max_llm_calls=max_llm_calls,
            max_prompt_tokens=max_prompt_tokens,
            cache=cache_arg(cache, no_cache),
            on_step=on_step,
        )
    result.config["task_source"] = {
        "task": task,
        "pool": pool,
        "val": val,
        "test": test,
        "data": data,
        "input_col": input_col,
        "output_col": output_col,
        "split_seed": split_seed,
    }
    print_result(result)
    if out_path is not None:
        result.save(out_path)
        err.print(f"wrote {out_path}", highlight=False, markup=False)
