"""`iclopt select`: one selection method's demonstrations."""

from __future__ import annotations

from pathlib import Path

import typer

from iclopt.cli._common import (
    O_K,
    EvalOptions,
    InputDataError,
    LLMOptions,
    TaskOptions,
    TemplateStyle,
    app,
    build_task,
    check_out_path,
    demo_table,
    err,
    group,
    load_llm,
    one_line_errors,
    option_groups,
    out,
    quiet_libraries,
)


@app.command()
@one_line_errors
@option_groups
def select(
    method: str = typer.Option(..., help="Selection method (see `iclopt methods`)."),
    source: TaskOptions = group(),
    k: int = O_K,
    query: str = typer.Option(
        None,
        help="The query; required by per-query methods (similarity, dpp, mdl). Also prints the final prompt for it.",
    ),
    seed: int = typer.Option(0, help="Seed of the method."),
    budget: int = typer.Option(
        20, min=1, help="Validation evaluations for search methods (best-of-n)."
    ),
    backend: LLMOptions = group(),
    ev: EvalOptions = group(),
    out_path: Path = typer.Option(
        None, "--out", help="Write the chosen prompt (instruction, demos in order) as JSON here."
    ),
) -> None:
    """Choose k ordered demonstrations with one selection method and print them."""
    from iclopt.api import select as run_select
    from iclopt.artifacts import write_json_atomic
    from iclopt.selectors import SELECTORS

    quiet_libraries()
    cls = SELECTORS.get(method)
    check_out_path(out_path)
    if cls.per_query and query is None:
        raise InputDataError(
            f"method {method!r} picks demonstrations per query and cannot give one fixed "
            "prompt; pass --query"
        )
    the_task = build_task(source, k=k)
    tmpl = ev.make_template()
    with err.status(f"selecting with {method} ..."):
        prompt = run_select(
            the_task,
            method,
            k=k,
            llm=load_llm(**backend.as_kwargs()),
            seed=seed,
            query=query,
            budget=budget,
            template=tmpl,
            scoring=ev.scoring.value,
            max_new_tokens=ev.max_new_tokens,
            cache=ev.cache_arg(),
        )
    demos = [the_task.pool[i] for i in prompt.demos]
    out.print(demo_table(f"{method} for {the_task.name}", prompt.demos, demos))
    if query is not None and tmpl.style == TemplateStyle.completion.value:
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
