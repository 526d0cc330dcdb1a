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
from rich.text import Text

from iclopt.errors import IcloptError, InputDataError

app = typer.Typer(
    name="iclopt",
    help=(
        "Find the instruction and ORDERED few-shot exemplars that make an LLM do a task "
        "best, within a budget of LLM calls; compare with the classic selection heuristics."
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
            err.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
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


# Options shared by `optimize` and `compare`.
O_TASK = typer.Option(None, "--task", help="A built-in task (see `iclopt tasks`).")
O_POOL = typer.Option(
    None,
    help="File of candidate demonstrations (.json/.jsonl/.csv/.parquet, a saved HF dataset dir, or hf:NAME[:CONFIG][@SPLIT]).",
)
O_VAL = typer.Option(None, help="File of validation queries: prompts are scored on these.")
O_TEST = typer.Option(
    None, help="File of held-out test queries: final prompts are scored on these."
)
O_DATA = typer.Option(
    None,
    help="One file, shuffled with --split-seed and cut into val, test and pool (instead of --pool/--val/--test).",
)
O_INPUT_COL = typer.Option("input", help="Column (field) holding the input text.")
O_OUTPUT_COL = typer.Option(
    "output", help="Column holding the answer (text, or a list of acceptable answers)."
)
O_POOL_SIZE = typer.Option(
    100, min=1, help="Keep at most this many pool examples (the first ones)."
)
O_VAL_SIZE = typer.Option(20, min=1, help="Keep at most this many validation queries.")
O_TEST_SIZE = typer.Option(100, min=1, help="Keep at most this many test queries.")
O_SPLIT_SEED = typer.Option(0, help="Seed of the shuffle that splits --data.")
O_LABELS = typer.Option(
    "auto",
    help="Label set of a classification task: 'auto' (inferred from the pool), 'none', or comma-separated labels.",
)
O_METRIC = typer.Option(
    "auto",
    help="exact_match, contains, token_f1, set_match, label_accuracy, or 'auto' (chosen from the task).",
)
O_K = typer.Option(5, min=1, help="Number of demonstrations in the prompt.")
O_MODEL = typer.Option(
    "smollm2",
    help="LLM: 'smollm2' (embedded, offline), a local transformers model directory, a .gguf file, or hf:HUB_ID (online only).",
)
O_TEMPLATE = typer.Option(
    TemplateStyle.completion,
    help="'completion' (Input:/Output: text) or 'chat' (the model's chat template).",
)
O_SCORING = typer.Option(
    ScoringMode.auto,
    help="'generate' (greedy answer, then the metric), 'labels' (most likely label), or 'auto' (labels for classification tasks).",
)
O_MAX_NEW_TOKENS = typer.Option(16, min=1, help="Generation cap per answer.")
O_CACHE = typer.Option(
    None,
    help="Result cache (SQLite). Default: $ICLOPT_CACHE_DIR/results.sqlite or ~/.cache/iclopt/results.sqlite.",
)
O_NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write the result cache.")
O_QUIET = typer.Option(False, "--quiet", "-q", help="No progress bar.")


def _quiet_libraries() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # library progress bars; the CLI has its own
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def _cache_arg(cache: Path | None, no_cache: bool) -> Path | bool:
    """--cache/--no-cache as the library's ``cache`` argument."""
    if no_cache:
        return False
    return cache if cache is not None else True


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


def _build_task(
    task: str | None,
    pool: str | None,
    val: str | None,
    test: str | None,
    data: str | None,
    input_col: str,
    output_col: str,
    pool_size: int,
    val_size: int,
    test_size: int,
    split_seed: int,
    labels: str,
    metric: str,
    k: int,
) -> Any:
    """The task named by the shared task options of ``optimize`` and ``compare``."""
    from iclopt.data import load_task
    from iclopt.datasets import get_task
    from iclopt.metrics import get_metric

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
    get_metric(the_task.metric)
    if k > len(the_task.pool):
        raise InputDataError(f"--k {k} is larger than the pool ({len(the_task.pool)} examples)")
    return the_task


def _load_llm(model: str) -> Any:
    from iclopt.llms import get_llm
    from iclopt.llms.hf import HFModel

    with err.status(f"loading {model} (the first run converts the embedded model, ~20 s) ..."):
        llm = get_llm(model)
        if isinstance(llm, HFModel):
            llm.load()
    return llm


def _describe(the_task: Any, llm: Any, scoring: ScoringMode) -> None:
    labels = scoring == ScoringMode.labels or (scoring == ScoringMode.auto and the_task.labels)
    metric = the_task.metric if isinstance(the_task.metric, str) else "custom"
    err.print(
        f"task {the_task.name}: pool {len(the_task.pool)}, val {len(the_task.val)}, "
        f"test {len(the_task.test)}; metric {metric}; "
        f"{'label scoring' if labels else 'generation'}; model {llm.identity}",
        highlight=False,
        markup=False,
    )


def _progress(quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err,
        disable=quiet,
    )


@app.command()
@_one_line_errors
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
    method: str = typer.Option("best-of-n", help="Search method (see `iclopt methods`)."),
    model: str = O_MODEL,
    seed: int = typer.Option(0, help="Seed of the search."),
    instruction: list[str] = typer.Option(
        None,
        help="Candidate instruction (repeat for several; searched jointly with the exemplars).",
    ),
    instructions_file: Path = typer.Option(
        None, help="File with one candidate instruction per line."
    ),
    template: TemplateStyle = O_TEMPLATE,
    scoring: ScoringMode = O_SCORING,
    max_new_tokens: int = O_MAX_NEW_TOKENS,
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
    from iclopt.prompts import Template

    _quiet_libraries()
    the_task = _build_task(
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
    )
    OPTIMIZERS.get(method)
    cands = _instructions(instruction, instructions_file)
    if out_path is not None and out_path.is_dir():
        raise InputDataError(f"{out_path}: is a directory; --out needs a file path")
    llm = _load_llm(model)
    _describe(the_task, llm, scoring)
    best = [float("-inf")]
    with _progress(quiet) as progress:
        bar = progress.add_task("searching", total=budget, note="")

        def on_step(entry: Any, ev: Any) -> None:
            best[0] = max(best[0], entry.score)
            progress.update(bar, advance=1, note=f"best val {best[0]:.3f}")

        result = run_optimize(
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
            cache=_cache_arg(cache, no_cache),
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
        err.print(f"wrote {out_path}", highlight=False, markup=False)


@app.command()
@_one_line_errors
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
        help="Comma-separated selection methods (see `iclopt methods`).",
    ),
    seeds: int = typer.Option(
        3, min=1, help="Run each method with seeds 0 .. N-1; the table shows mean and std."
    ),
    budget: int = typer.Option(
        20, min=1, help="Validation evaluations for search methods (best-of-n)."
    ),
    model: str = O_MODEL,
    embedder: str = typer.Option(
        None,
        help="sentence-transformers model name or folder for retrieval methods (default: the offline all-MiniLM-L6-v2).",
    ),
    template: TemplateStyle = O_TEMPLATE,
    scoring: ScoringMode = O_SCORING,
    max_new_tokens: int = O_MAX_NEW_TOKENS,
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
    from iclopt.prompts import Template
    from iclopt.selectors import SELECTORS

    _quiet_libraries()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    if not names:
        raise InputDataError("--methods is empty")
    for name in names:
        SELECTORS.get(name)
    if out_dir.exists() and not out_dir.is_dir():
        raise InputDataError(f"{out_dir}: exists and is not a directory")
    the_task = _build_task(
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
    )
    emb = None
    if embedder is not None:
        from iclopt.embedders import SentenceTransformerEmbedder

        emb = SentenceTransformerEmbedder(embedder).load()
    llm = _load_llm(model)
    _describe(the_task, llm, scoring)
    with _progress(quiet) as progress:
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
            cache=_cache_arg(cache, no_cache),
            on_run=on_run,
        )
    from iclopt.reports.comparison import markdown_table

    paths = result.save(out_dir)
    out.print(markdown_table(result.summary), highlight=False, markup=False)
    err.print(f"wrote {', '.join(str(p) for p in paths.values())}", highlight=False, markup=False)


@app.command()
@_one_line_errors
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
    template: TemplateStyle = O_TEMPLATE,
    scoring: ScoringMode = O_SCORING,
    max_new_tokens: int = O_MAX_NEW_TOKENS,
    cache: Path = O_CACHE,
    no_cache: bool = O_NO_CACHE,
    out_path: Path = typer.Option(
        None, "--out", help="Write the chosen prompt (instruction, demos in order) as JSON here."
    ),
) -> None:
    """Choose k ordered demonstrations with one selection method and print them."""
    from iclopt.api import select as run_select
    from iclopt.prompts import Template
    from iclopt.results import write_json_atomic
    from iclopt.selectors import SELECTORS

    _quiet_libraries()
    cls = SELECTORS.get(method)
    if cls.per_query and query is None:
        raise InputDataError(
            f"method {method!r} picks demonstrations per query and cannot give one fixed "
            "prompt; pass --query"
        )
    the_task = _build_task(
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
    )
    tmpl = Template(style=template.value)
    with err.status(f"selecting with {method} ..."):
        prompt = run_select(
            the_task,
            method,
            k=k,
            llm=_load_llm(model),
            seed=seed,
            query=query,
            budget=budget,
            template=tmpl,
            scoring=scoring.value,
            max_new_tokens=max_new_tokens,
            cache=_cache_arg(cache, no_cache),
        )
    demos = [the_task.pool[i] for i in prompt.demos]
    out.print(_demo_table(f"{method} for {the_task.name}", prompt.demos, demos))
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


def _demo_table(title: str, ids: Any, demos: Any) -> Table:
    table = Table(title=Text(title))
    table.add_column("#", justify="right")
    table.add_column("pool id", justify="right")
    table.add_column("input")
    table.add_column("output")
    for pos, (pid, ex) in enumerate(zip(ids, demos), start=1):
        table.add_row(str(pos), str(pid), Text(ex.input), Text(ex.target))  # no markup
    return table


def _print_result(result: Any) -> None:
    table = _demo_table(
        f"Best prompt for {result.task} ({result.model})", result.best.demos, result.demos
    )
    if result.best.instruction:
        out.print(Text.assemble(("instruction: ", "bold"), result.best.instruction))
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
    from iclopt.selectors import SELECTORS

    for title, reg in (
        ("optimize --method", OPTIMIZERS),
        ("compare --methods", SELECTORS),
        ("models", LLMS),
        ("metrics", METRICS),
    ):
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
