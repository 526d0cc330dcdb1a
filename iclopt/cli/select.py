"""`iclopt select`: one selection method's demonstrations."""

from __future__ import annotations

from pathlib import Path

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
    check_out_path,
    demo_table,
    err,
    load_llm,
    one_line_errors,
    out,
    quiet_libraries,
)


@app.command()
@one_line_errors
def select(
    method: str = typer.Option(..., help="Selection method (see `iclopt methods`)."),
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
    query: str = typer.Option(
        None,
        help="The query; required by per-query methods (similarity, dpp, mdl). Also prints the final prompt for it.",
    ),
    seed: int = typer.Option(0, help="Seed of the method."),
    budget: int = typer.Option(
        20, min=1, help="Validation evaluations for search methods (best-of-n)."
    ),
    model: str = O_MODEL,
    base_url: str = O_BASE_URL,
    api_key_env: str = O_API_KEY_ENV,
    concurrency: int = O_CONCURRENCY,
    timeout: float = O_TIMEOUT,
    max_retries: int = O_MAX_RETRIES,
    template: TemplateStyle = O_TEMPLATE,
    scoring: ScoringMode = O_SCORING,
    max_new_tokens: int = O_MAX_NEW_TOKENS,
    keep_overlap: bool = O_KEEP_OVERLAP,
    cache: Path = O_CACHE,
    no_cache: bool = O_NO_CACHE,
    out_path: Path = typer.Option(
        None, "--out", help="Write the chosen prompt (instruction, demos in order) as JSON here."
    ),
) -> None:
    """Choose k ordered demonstrations with one selection method and print them."""
    from iclopt.api import select as run_select
    from iclopt.artifacts import write_json_atomic
    from iclopt.prompts import Template
    from iclopt.selectors import SELECTORS

    quiet_libraries()
    cls = SELECTORS.get(method)
    check_out_path(out_path)
    if cls.per_query and query is None:
        raise InputDataError(
            f"method {method!r} picks demonstrations per query and cannot give one fixed "
            "prompt; pass --query"
        )
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
    tmpl = Template(style=template.value)
    with err.status(f"selecting with {method} ..."):
        prompt = run_select(
            the_task,
            method,
            k=k,
            llm=load_llm(
                model,
                base_url=base_url,
                api_key_env=api_key_env,
                concurrency=concurrency,
                timeout=timeout,
                max_retries=max_retries,
            ),
            seed=seed,
            query=query,
            budget=budget,
            template=tmpl,
            scoring=scoring.value,
            max_new_tokens=max_new_tokens,
            cache=cache_arg(cache, no_cache),
        )
    demos = [the_task.pool[i] for i in prompt.demos]
    out.print(demo_table(f"{method} for {the_task.name}", prompt.demos, demos))
    if query is not None and template == TemplateStyle.completion:
        out.print(tmpl.render_text(prompt.instruction, demos, query), highlight=False, markup=False)
    if out_path is not None:
        write_json_atomic(
            out_path,
            {
                "method": method,
                "task": the_task.name,
                "seed": seed,
                "query": query,
                "prompt": {
                    "instruction": prompt.instruction,
                    "demos": [
                        {"pool_id": pid, "id": ex.id, "input": ex.input, "output": ex.target}
                        for pid, ex in zip(prompt.demos, demos)
                    ],
                },
            },
        )
        err.print(f"wrote {out_path}", highlight=False, markup=False)
