"""`iclopt attribute`: which demonstrations of a prompt help, hurt, or look mislabeled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from iclopt.attribution import ATTRIBUTORS
from iclopt.cli._common import (
    O_QUIET,
    EvalOptions,
    InputDataError,
    LLMOptions,
    TaskOptions,
    TemplateStyle,
    app,
    build_task,
    err,
    group,
    load_llm,
    one_line_errors,
    option_groups,
    out,
    quiet_libraries,
)
from iclopt.cli._feedback import Feedback


def _task_from_result(res: Any, keep_overlap: bool = False) -> Any:
    """Rebuild the task an `iclopt optimize --out` result was made on."""
    src = res.config.get("task_source")
    if not isinstance(src, dict):
        raise InputDataError(
            "the result does not record its task; give it with --task or --pool/--val/--test"
        )
    sizes = res.config.get("sizes") or {}
    labels = res.config.get("labels")
    metric = res.config.get("metric")
    opts = TaskOptions(
        task=src.get("task"),
        pool=src.get("pool"),
        val=src.get("val"),
        test=src.get("test"),
        data=src.get("data"),
        input_col=src.get("input_col", "input"),
        output_col=src.get("output_col", "output"),
        pool_size=int(sizes.get("pool", 100)),
        val_size=int(sizes.get("val", 20)),
        test_size=max(int(sizes.get("test", 100)), 1),
        split_seed=int(src.get("split_seed", 0)),
        labels=",".join(labels) if labels else "none",
        metric=metric if isinstance(metric, str) else "auto",
        keep_overlap=keep_overlap or bool(src.get("keep_overlap", False)),
    )
    return build_task(opts, k=1)


def _check_result_matches(res: Any, task: Any, path: Path) -> None:
    if res.task and res.task != task.name:
        raise InputDataError(f"{path} was made on task {res.task!r}, not on {task.name!r}")
    for pid, ex in zip(res.best.demos, res.demos):
        if not 0 <= pid < len(task.pool):
            raise InputDataError(
                f"{path}: demonstration id {pid} is outside the pool of {task.name!r} "
                f"({len(task.pool)} items); the result is from another task"
            )
        mine = task.pool[pid]
        if mine.input != ex.input or mine.target != ex.target:
            raise InputDataError(
                f"{path}: pool item {pid} differs from the task's; the result is from another "
                "task or pool"
            )


def _parse_ids(ids: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in ids.split(",") if x.strip())
    except ValueError:
        raise InputDataError(f"--ids needs comma-separated pool ids, got {ids!r}") from None


@app.command()
@one_line_errors
@option_groups
def attribute(
    result: Path = typer.Argument(
        None, help="A JSON result written by `iclopt optimize --out`: attribute its best prompt."
    ),
    method: str = typer.Option(
        "detail",
        help=f"Attribution method: {', '.join(ATTRIBUTORS)} (`iclopt methods` describes each); detail needs a white-box model (hidden states), the others work with any model.",
    ),
    source: TaskOptions = group(),
    ids: str = typer.Option(
        None, "--ids", help="An explicit prompt: comma-separated pool ids, in order."
    ),
    instruction: str = typer.Option(None, help="Instruction of an explicit prompt."),
    demos: int = typer.Option(
        None,
        "--demos",
        min=1,
        help="Attribute M random pool items at once (noisy-label screening; seeded by --seed).",
    ),
    seed: int = typer.Option(
        0, help="Seed: --demos sampling, DETAIL's projection, Shapley's permutations."
    ),
    layer: int = typer.Option(
        None, help="detail: hidden-state layer (0 = embeddings); default the middle one."
    ),
    lam: float = typer.Option(
        None, help="detail: relative ridge penalty (times the mean squared norm); default 0.01."
    ),
    projection_dim: int = typer.Option(
        None, min=1, help="detail: seeded random projection to this many dimensions."
    ),
    center: bool = typer.Option(
        False,
        "--center",
        help="detail: center representations and targets (a ridge fit with an intercept).",
    ),
    rank_by: str = typer.Option(
        None,
        help="detail: what flags a demonstration: 'self' (self influence), 'test' (most negative test influence) or 'auto' (test; self without queries).",
    ),
    utility: str = typer.Option(
        None,
        help="loo/shapley: 'metric', 'logprob' (gold label log-probability; label scoring) or 'auto'.",
    ),
    permutations: int = typer.Option(
        None, min=2, help="shapley: sample budget in permutations (default 50)."
    ),
    tolerance: float = typer.Option(
        None, help="shapley: stop when every standard error <= this times |v(all) - v(empty)|."
    ),
    max_evaluations: int = typer.Option(
        None, min=1, help="loo/shapley: hard cap on prompt evaluations."
    ),
    backend: LLMOptions = group(),
    ev: EvalOptions = group(
        template=typer.Option(
            None, help="'completion' or 'chat'; default the result's template, else completion."
        ),
        max_new_tokens=typer.Option(None, min=1, help="loo/shapley: generation cap."),
    ),
    out_dir: Path = typer.Option(
        Path("."),
        "--out",
        help="Folder for attribution.json, attribution.md and attribution.html (created).",
    ),
    quiet: bool = O_QUIET,
) -> None:
    """Explain a prompt: which demonstrations help, which hurt, which look mislabeled.

    Give the prompt as RESULT.json (its best prompt and task), or a task (--task or
    --pool/--val/--test) with --ids (an explicit prompt) or --demos M (M random pool items).
    Writes attribution.json, attribution.md and a self-contained attribution.html.
    """
    from iclopt.attribution import ATTRIBUTORS, make_attributor
    from iclopt.evaluation import Budget
    from iclopt.prompts import Prompt, Template
    from iclopt.results import OptimizationResult

    quiet_libraries()
    ATTRIBUTORS.get(method)  # an unknown method fails before any work
    if out_dir.exists() and not out_dir.is_dir():
        raise InputDataError(f"{out_dir}: exists and is not a directory")
    given = sum(x is not None for x in (result, ids, demos))
    if given == 0:
        raise InputDataError("no prompt: give RESULT.json, --ids or --demos")
    if given > 1:
        raise InputDataError("give only one of RESULT.json, --ids and --demos")
    has_task = source.given
    template = ev.template
    res = OptimizationResult.load(result) if result is not None else None
    if has_task or res is None:
        the_task = build_task(source, k=1)
    else:
        the_task = _task_from_result(res)
    if res is not None:
        assert result is not None
        try:
            _check_result_matches(res, the_task, result)
        except InputDataError:
            if has_task:
                raise
            # the result may have been made with --keep-overlap, which it does not record
            the_task = _task_from_result(res, keep_overlap=True)
            _check_result_matches(res, the_task, result)
        prompt = res.best
        tmpl = res.template if template is None else Template(style=template.value)
    else:
        tmpl = Template(style=(template or TemplateStyle.completion).value)
        if demos is not None:
            if demos > len(the_task.pool):
                raise InputDataError(
                    f"--demos {demos} is larger than the pool ({len(the_task.pool)} examples)"
                )
            import numpy as np

            picked = np.random.default_rng(seed).choice(len(the_task.pool), demos, replace=False)
            prompt = Prompt(instruction, tuple(int(i) for i in picked))
        else:
            prompt = Prompt(instruction, _parse_ids(ids))
    prompt.validate(len(the_task.pool))
    if not prompt.demos:
        raise InputDataError("the prompt has no demonstrations to attribute")
    options: dict[str, Any] = {
        "layer": layer,
        "lam": lam,
        "projection_dim": projection_dim,
        "center": True if center else None,
        "rank_by": rank_by,
        "utility": utility,
        "max_permutations": permutations,
        "tolerance": tolerance,
    }
    llm = load_llm(**backend.as_kwargs())
    if res is not None and res.model and res.model != llm.identity:
        raise InputDataError(
            f"{result} was made with model {res.model!r}, not {llm.identity!r}; pass --model"
        )
    attributor = make_attributor(
        method,
        llm,
        template=tmpl,
        scoring=ev.scoring.value,
        max_new_tokens=ev.max_new_tokens,
        cache=ev.cache_arg(),
        budget=Budget(max_evaluations=max_evaluations) if max_evaluations is not None else None,
        seed=seed,
        **options,
    )
    with err.status(f"attributing {len(prompt.demos)} demonstrations with {method} ..."):
        attr = attributor.attribute(the_task, prompt)
    paths = attr.save(out_dir)
    if not quiet:
        _print(attr)
    from iclopt.reports.attribution import advice

    Feedback(quiet).artifacts(
        {f"attribution.{kind}": p for kind, p in paths.items()},
        headline=advice(attr) + "\nwrote",
        final="attribution.html",
    )


def _print(attr: Any) -> None:
    from rich.table import Table
    from rich.text import Text

    from iclopt.reports.attribution import readable_scale, verdicts

    scale = readable_scale(attr)
    words = verdicts(attr, scale)
    table = Table(title=Text(f"{attr.method} attribution for {attr.task} ({attr.model})"))
    for col in ("#", "pool id", scale.header, "verdict", "input", "output"):
        table.add_column(col)
    for j, (pid, ex) in enumerate(zip(attr.prompt.demos, attr.demos)):
        table.add_row(
            str(j + 1),
            str(pid),
            scale.fmt(j),
            words[j],
            Text(ex.input[:80]),
            Text(ex.target),
        )
    out.print(table)
    c = attr.cost
    out.print(
        f"cost: {c.evaluations} evaluations, {c.llm_calls} LLM calls, {c.prompt_tokens} prompt "
        f"tokens, {c.cache_hits} cache hits, {c.seconds:.1f} s",
        highlight=False,
    )
