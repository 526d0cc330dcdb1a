"""The ``iclopt`` command line (typer). Objects are built only through the registries."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from iclopt.errors import IcloptError, InputDataError

app = typer.Typer(
    name="iclopt",
    help=(
        "Find the instruction and ORDERED few-shot exemplars that make an LLM do a task "
        "best, within a budget of LLM calls."
    ),
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
out = Console()
err = Console(stderr=True)

F = TypeVar("F", bound=Callable[..., Any])


def _one_line_errors(fn: F) -> F:
    """Turn iclopt's errors into one line on stderr and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except IcloptError as exc:
            err.print(f"[bold red]error:[/] {exc}", highlight=False, soft_wrap=True)
            raise typer.Exit(2) from None

    return wrapper  # type: ignore[return-value]


class TemplateStyle(str, Enum):
    """Prompt styles."""

    completion = "completion"
    chat = "chat"


class ScoringMode(str, Enum):
    """How a prompt's answers are obtained."""

    auto = "auto"
    generate = "generate"
    labels = "labels"


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _labels(value: str) -> Any:
    if value == "auto":
        return "auto"
    if value == "none":
        return None
    labels = [v.strip() for v in value.split(",") if v.strip()]
    if len(labels) < 2:
        raise InputDataError(f"--labels needs 'auto', 'none' or at least two labels, got {value!r}")
    return labels


def _instructions(
    instruction: list[str] | None, instructions_file: Path | None
) -> list[str | None]:
    found: list[str | None] = list(instruction or [])
    if instructions_file is not None:
        try:
            text = instructions_file.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise InputDataError(f"{instructions_file}: file not found") from None
        except UnicodeDecodeError as exc:
            raise InputDataError(
                f"{instructions_file}: not valid UTF-8 (byte {exc.start})"
            ) from None
        found += [line.strip() for line in text.splitlines() if line.strip()]
    return found or [None]


@app.command()
@_one_line_errors
def optimize(
    task: str = typer.Option(None, "--task", help="A built-in task (see `iclopt tasks`)."),
    pool: str = typer.Option(
        None,
        help="File of candidate demonstrations (.json/.jsonl/.csv/.parquet, a saved HF dataset dir, or hf:NAME[:CONFIG][@SPLIT]).",
    ),
    val: str = typer.Option(None, help="File of validation queries: prompts are scored on these."),
    test: str = typer.Option(
        None, help="File of held-out test queries: the best prompt is scored once on these."
    ),
    data: str = typer.Option(
        None,
        help="One file, shuffled with --split-seed and cut into val, test and pool (instead of --pool/--val/--test).",
    ),
    input_col: str = typer.Option("input", help="Column (field) holding the input text."),
    output_col: str = typer.Option(
        "output", help="Column holding the answer (text, or a list of acceptable answers)."
    ),
    pool_size: int = typer.Option(
        100, min=1, help="Keep at most this many pool examples (the first ones)."
    ),
    val_size: int = typer.Option(20, min=1, help="Keep at most this many validation queries."),
    test_size: int = typer.Option(100, min=1, help="Keep at most this many test queries."),
    split_seed: int = typer.Option(0, help="Seed of the shuffle that splits --data."),
    labels: str = typer.Option(
        "auto",
        help="Label set of a classification task: 'auto' (inferred from the pool), 'none', or comma-separated labels.",
    ),
    metric: str = typer.Option(
        "auto",
        help="exact_match, contains, token_f1, set_match, label_accuracy, or 'auto' (chosen from the task).",
    ),
    k: int = typer.Option(5, min=1, help="Number of demonstrations in the prompt."),
    budget: int = typer.Option(
        60,
        min=1,
        help="Validation evaluations the search may spend (each scores one prompt on every validation query).",
    ),
    method: str = typer.Option("best-of-n", help="Search method (see `iclopt methods`)."),
    model: str = typer.Option(
        "smollm2",
        help="LLM: 'smollm2' (embedded, offline), a local transformers model directory, a .gguf file, or hf:HUB_ID (online only).",
    ),
    seed: int = typer.Option(0, help="Seed of the search."),
    instruction: list[str] = typer.Option(
        None,
        help="Candidate instruction (repeat for several; searched jointly with the exemplars).",
    ),
    instructions_file: Path = typer.Option(
        None, help="File with one candidate instruction per line."
    ),
    template: TemplateStyle = typer.Option(
        TemplateStyle.completion,
        help="'completion' (Input:/Output: text) or 'chat' (the model's chat template).",
    ),
    scoring: ScoringMode = typer.Option(
        ScoringMode.auto,
        help="'generate' (greedy answer, then the metric), 'labels' (most likely label), or 'auto' (labels for classification tasks).",
    ),
    max_new_tokens: int = typer.Option(16, min=1, help="Generation cap per answer."),
    max_llm_calls: int = typer.Option(
        None, min=1, help="Optional hard cap on LLM calls (cache hits are free)."
    ),
    max_prompt_tokens: int = typer.Option(
        None, min=1, help="Optional hard cap on prompt tokens sent to the LLM."
    ),
    cache: Path = typer.Option(
        None,
        help="Result cache (SQLite). Default: $ICLOPT_CACHE_DIR/results.sqlite or ~/.cache/iclopt/results.sqlite.",
    ),
    no_cache: bool = typer.Option(
        False, "--no-cache", help="Do not read or write the result cache."
    ),
    out_path: Path = typer.Option(
        None, "--out", help="Write the JSON result (prompt, scores, cost, trace, config) here."
    ),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Search the best instruction + ordered exemplars for a task and report its scores.

    Give the task as --task NAME, as --pool/--val[/--test] files, or as one --data file.
    """
    from iclopt.api import optimize as run_optimize
    from iclopt.data import load_task
    from iclopt.datasets import get_task
    from iclopt.llms import get_llm
    from iclopt.llms.hf import HFModel
    from iclopt.prompts import Template
    from iclopt.results import OptimizationResult

    _quiet_libraries()
    sources = [x for x in (pool, val, test, data) if x is not None]
    if task is not None and sources:
        raise InputDataError("give either --task or data files, not both")
    if task is not None:
        the_task = get_task(task)
        if metric != "auto":
            the_task.metric = metric
    elif sources:
        the_task = load_task(
            pool=pool,
            val=val,
            test=test,
            data=data,
            input_col=input_col,
            output_col=output_col,
            pool_size=pool_size,
            val_size=val_size,
            test_size=test_size,
            split_seed=split_seed,
            metric=metric,
            labels=_labels(labels),
        )
    else:
        raise InputDataError("no task: give --task NAME, --pool/--val/--test files, or --data FILE")
    from iclopt.metrics import get_metric

    get_metric(the_task.metric)
    if k > len(the_task.pool):
        raise InputDataError(f"--k {k} is larger than the pool ({len(the_task.pool)} examples)")
    from iclopt.bandits import OPTIMIZERS

    OPTIMIZERS.get(method)
    cands = _instructions(instruction, instructions_file)
    if out_path is not None and out_path.exists() and out_path.is_dir():
        raise InputDataError(f"{out_path}: is a directory; --out needs a file path")
    llm = get_llm(model)
    if isinstance(llm, HFModel):
        with err.status(f"loading {model} ..."):
            llm.load()
    store: Any = False if no_cache else (cache if cache is not None else True)

    kind = (
        "label scoring"
        if (scoring == ScoringMode.labels or (scoring == ScoringMode.auto and the_task.labels))
        else "generation"
    )
    err.print(
        f"task [bold]{the_task.name}[/]: pool {len(the_task.pool)}, val {len(the_task.val)}, "
        f"test {len(the_task.test)}; metric {the_task.metric if isinstance(the_task.metric, str) else 'custom'}; "
        f"{kind}; model {llm.identity}",
        highlight=False,
    )
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("best val {task.fields[best]}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
        transient=False,
    )
    best = [float("-inf")]

    def on_step(entry: Any, ev: Any) -> None:
        best[0] = max(best[0], entry.score)
        progress.update(bar, advance=1, best=f"{best[0]:.3f}")

    with progress:
        bar = progress.add_task("searching", total=budget, best="-")
        result: OptimizationResult = run_optimize(
            the_task,
            llm=llm,
            k=k,
            budget=budget,
            method=method,
            seed=seed,
            instructions=cands,
            template=Template(style=template.value),
            scoring=scoring.value,
            max_new_tokens=max_new_tokens,
            max_llm_calls=max_llm_calls,
            max_prompt_tokens=max_prompt_tokens,
            cache=store,
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
    _print_result(result)
    if out_path is not None:
        result.save(out_path)
        err.print(f"wrote {out_path}", highlight=False)


def _print_result(result: Any) -> None:
    table = Table(title=f"Best prompt for {result.task} ({result.model})", show_lines=False)
    table.add_column("#", justify="right")
    table.add_column("pool id", justify="right")
    table.add_column("input")
    table.add_column("output")
    for pos, (pid, ex) in enumerate(zip(result.best.demos, result.demos), start=1):
        table.add_row(str(pos), str(pid), ex.input, ex.target)
    if result.best.instruction:
        out.print(f"[bold]instruction:[/] {result.best.instruction}", highlight=False)
    out.print(table)
    test = "n/a" if result.test_score is None else f"{result.test_score:.3f}"
    c = result.cost
    out.print(
        f"val score {result.val_score:.3f}   test score {test}   "
        f"search: {c['evaluations']} evaluations, {c['llm_calls']} LLM calls, "
        f"{c['prompt_tokens']} prompt tokens, {c['cache_hits']} cache hits, {c['seconds']:.1f} s",
        highlight=False,
    )


@app.command()
@_one_line_errors
def show(
    path: Path = typer.Argument(..., help="A JSON result written by `iclopt optimize --out`."),
    query: str = typer.Option(None, help="Print the final prompt text for this query."),
) -> None:
    """Print a saved result, or the final prompt rendered for a query."""
    from iclopt.results import OptimizationResult

    result = OptimizationResult.load(path)
    if query is not None:
        rendered = result.render(query)
        out.print(rendered, highlight=False, markup=False)
        return
    _print_result(result)


@app.command()
def tasks() -> None:
    """List the built-in example tasks."""
    from iclopt.datasets import TASKS, get_task

    for name in TASKS.names():
        t = get_task(name)
        doc = (TASKS.get(name).__doc__ or "").strip().splitlines()[0]
        out.print(
            f"{name:12s} pool {len(t.pool):4d}  val {len(t.val):3d}  test {len(t.test):3d}  {doc}",
            highlight=False,
        )


@app.command()
def methods() -> None:
    """List search methods, models and metrics by name."""
    from iclopt.bandits import OPTIMIZERS
    from iclopt.llms import LLMS
    from iclopt.metrics import METRICS

    for title, reg in (("methods", OPTIMIZERS), ("models", LLMS), ("metrics", METRICS)):
        out.print(f"{title}: {', '.join(reg.names())}", highlight=False)


def main() -> None:
    """Console-script entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except KeyboardInterrupt:
        err.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
