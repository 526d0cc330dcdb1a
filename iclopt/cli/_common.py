"""What every `iclopt` command shares: app, consoles, error handling, options, task building.

The options several commands take are defined once, in three option groups: where the task
comes from (:class:`TaskOptions`), which LLM answers (:class:`LLMOptions`), and how prompts
are evaluated (:class:`EvalOptions`). A command declares a parameter of the group's type
and :func:`option_groups` adds the group's typer options to the command in its place, then
hands the command one dataclass::

    @app.command()
    @one_line_errors
    @option_groups
    def select(source: TaskOptions = group(), backend: LLMOptions = group(), ...) -> None:
        the_task = build_task(source, k=k)
        llm = load_llm(**backend.as_kwargs())

``group(name=typer.Option(...))`` gives one command its own version of a group's option
(``attribute``'s ``--template`` defaults to the result's template).
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import tempfile
import typing
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text
from typer.core import TyperGroup

from iclopt.cli._feedback import errors, quiet_logging, silence_library_warnings
from iclopt.errors import IcloptError, InputDataError

# typer bundles its own click; its usage-error class is the base of the public BadParameter
_UsageError: Any = next(c for c in typer.BadParameter.__mro__ if c.__name__ == "UsageError")


class _UsageErrorLine(_UsageError):  # type: ignore[misc]
    """A usage error shown as one line (click shows the usage, a hint and the error)."""

    def show(self, file: Any = None) -> None:
        errors.print(Text.assemble(("error: ", "bold red"), self.format_message()), soft_wrap=True)


class _OneLineGroup(TyperGroup):
    """The command group, with usage errors on one line.

    A bad option value or a missing option of a command is one line on stderr with exit
    code 2, like every other input error.
    """

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except _UsageError as exc:
            if isinstance(exc, _UsageErrorLine) or type(exc).__name__ == "NoArgsIsHelpError":
                raise
            where = exc.ctx.command_path if exc.ctx is not None else "iclopt"
            raise _UsageErrorLine(
                f"{exc.format_message()} (see `{where} --help`)", exc.ctx
            ) from None


app = typer.Typer(
    cls=_OneLineGroup,
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


def one_line_errors(fn: F) -> F:
    """Turn iclopt's errors into one line on stderr and exit code 2, no traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        quiet = bool(kwargs.get("quiet"))
        muted = err.quiet
        try:
            # library warnings are dropped for the command's duration (quiet_libraries)
            with warnings.catch_warnings(), quiet_logging(quiet):
                err.quiet = muted or quiet  # --quiet: errors (own console) and the final path
                return fn(*args, **kwargs)
        except IcloptError as exc:
            errors.print(Text.assemble(("error: ", "bold red"), str(exc)), soft_wrap=True)
            raise typer.Exit(2) from None
        finally:
            err.quiet = muted

    return wrapper  # type: ignore[return-value]


class TemplateStyle(str, Enum):
    """Prompt styles."""

    completion = "completion"
    chat = "chat"


def _scoring_modes() -> Any:
    """``auto`` and every registered scorer, as the choices of ``--scoring``."""
    from iclopt.scoring import SCORERS

    names = ["auto", *SCORERS.names()]
    return Enum("ScoringMode", {n.replace("-", "_"): n for n in names}, type=str)


def _scoring_help() -> str:
    from iclopt.scoring import SCORERS

    each = "; ".join(
        f"'{n}': {(SCORERS.get(n).__doc__ or '').strip().splitlines()[0].rstrip('.')}"
        for n in SCORERS.names()
    )
    return (
        "How a query is answered and measured; the score is always the task metric, the "
        "signal is what a search learns from. 'auto': label-prob for classification tasks, "
        f"else generate; {each}."
    )


if typing.TYPE_CHECKING:

    class ScoringMode(str, Enum):
        """How a prompt's answers are obtained (the members are built at run time)."""

        auto = "auto"

else:
    #: How a prompt's answers are obtained: ``auto`` or a registered scorer's name.
    ScoringMode = _scoring_modes()


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
    help="LLM: 'smollm2' (embedded, offline), a local transformers model directory, a .gguf file, hf:HUB_ID (online only), or openai:MODEL_NAME (a server with an OpenAI-compatible API; see --base-url).",
)
O_BASE_URL = typer.Option(
    None,
    help="API root of an OpenAI-compatible server for --model openai:NAME, e.g. http://127.0.0.1:8000/v1 (vLLM, TGI, llama.cpp, transformers serve). Default: $OPENAI_BASE_URL, else OpenAI.",
)
O_API_KEY_ENV = typer.Option(
    "OPENAI_API_KEY",
    help="NAME of the environment variable holding the API key for --model openai:NAME (the key itself is never an option, never saved).",
)
O_CONCURRENCY = typer.Option(8, min=1, help="Requests in flight at once for --model openai:NAME.")
O_TIMEOUT = typer.Option(
    60.0, min=0.001, help="Seconds before a request to the API is abandoned and retried."
)
O_MAX_RETRIES = typer.Option(
    5,
    min=0,
    help="Retries per API request on 429/5xx, timeouts and dropped connections (exponential backoff with jitter, Retry-After honoured); then the run stops with an error.",
)
O_TEMPLATE = typer.Option(
    TemplateStyle.completion,
    help="'completion' (Input:/Output: text) or 'chat' (the model's chat template).",
)
O_SCORING = typer.Option(ScoringMode.auto, help=_scoring_help())
O_MAX_NEW_TOKENS = typer.Option(
    None,
    min=1,
    help="Generation cap per answer, in tokens. Default: the longest pool answer plus a margin (a warning names validation/test answers longer than the cap).",
)
O_KEEP_OVERLAP = typer.Option(
    False,
    "--keep-overlap",
    help="Keep pool examples whose input is also a validation/test input (by default they are removed: retrieval would look the answer up).",
)
O_CACHE = typer.Option(
    None,
    help="Result cache (SQLite). Default: $ICLOPT_CACHE_DIR/results.sqlite or ~/.cache/iclopt/results.sqlite.",
)
O_NO_CACHE = typer.Option(False, "--no-cache", help="Do not read or write the result cache.")
O_QUIET = typer.Option(
    False, "--quiet", "-q", help="Print only errors and the path of the final artifact."
)


def _option(option: Any, kind: Any) -> Any:
    """A group field: its default is the option's, its typer option and type ride along."""
    return dataclasses.field(default=option.default, metadata={"option": option, "kind": kind})


class OptionGroup:
    """Base of the option groups: dataclasses whose fields carry their typer options."""


@dataclass(frozen=True)
class TaskOptions(OptionGroup):
    """Where the task comes from: ``--task NAME``, ``--pool/--val/--test`` files or ``--data``.

    Example:
        >>> build_task(TaskOptions(task="sentiment"), k=4).name
        'sentiment'
    """

    task: str | None = _option(O_TASK, str)
    pool: str | None = _option(O_POOL, str)
    val: str | None = _option(O_VAL, str)
    test: str | None = _option(O_TEST, str)
    data: str | None = _option(O_DATA, str)
    input_col: str = _option(O_INPUT_COL, str)
    output_col: str = _option(O_OUTPUT_COL, str)
    pool_size: int = _option(O_POOL_SIZE, int)
    val_size: int = _option(O_VAL_SIZE, int)
    test_size: int = _option(O_TEST_SIZE, int)
    split_seed: int = _option(O_SPLIT_SEED, int)
    labels: str = _option(O_LABELS, str)
    metric: str = _option(O_METRIC, str)
    keep_overlap: bool = _option(O_KEEP_OVERLAP, bool)

    @property
    def given(self) -> bool:
        """Whether any task option names a task (a built-in one or data files)."""
        return self.task is not None or any(
            x is not None for x in (self.pool, self.val, self.test, self.data)
        )

    def source(self) -> dict[str, Any]:
        """Where the task came from, as a result records it (``config["task_source"]``)."""
        keys = ("task", "pool", "val", "test", "data", "input_col", "output_col", "split_seed")
        return {key: getattr(self, key) for key in keys}


@dataclass(frozen=True)
class LLMOptions(OptionGroup):
    """Which LLM answers: ``--model`` and the options of its backend."""

    model: str = _option(O_MODEL, str)
    base_url: str | None = _option(O_BASE_URL, str)
    api_key_env: str = _option(O_API_KEY_ENV, str)
    concurrency: int = _option(O_CONCURRENCY, int)
    timeout: float = _option(O_TIMEOUT, float)
    max_retries: int = _option(O_MAX_RETRIES, int)

    def as_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`load_llm`."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class EvalOptions(OptionGroup):
    """How prompts are evaluated: template, scoring, generation cap and result cache."""

    template: TemplateStyle | None = _option(O_TEMPLATE, TemplateStyle)  # noqa: RUF009 (a field())
    scoring: ScoringMode = _option(O_SCORING, ScoringMode)  # noqa: RUF009 (a field())
    max_new_tokens: int | None = _option(O_MAX_NEW_TOKENS, int)
    cache: Path | None = _option(O_CACHE, Path)  # noqa: RUF009 (a field())
    no_cache: bool = _option(O_NO_CACHE, bool)

    def cache_arg(self) -> Path | bool:
        """--cache/--no-cache as the library's ``cache`` argument."""
        return cache_arg(self.cache, self.no_cache)

    def make_template(self) -> Any:
        """The prompt :class:`~iclopt.prompts.Template` of --template (completion by default)."""
        from iclopt.prompts import Template

        return Template(style=(self.template or TemplateStyle.completion).value)


class _Overrides(dict[str, Any]):
    """A command's own versions of some options of a group (see :func:`group`)."""


def group(**options: Any) -> Any:
    """Default of an option-group parameter: ``options`` replace the group's by field name."""
    return _Overrides(options)


def option_groups(fn: F) -> F:
    """Expand each parameter typed as an :class:`OptionGroup` into the group's typer options.

    The options take the group parameter's place in the command's signature (so in
    ``--help``); the command receives one instance of the group.
    """
    hints = typing.get_type_hints(fn)
    params: list[inspect.Parameter] = []
    groups: dict[str, tuple[type[Any], list[str]]] = {}
    for p in inspect.signature(fn).parameters.values():
        kind: Any = hints.get(p.name, p.annotation)
        if not (isinstance(kind, type) and issubclass(kind, OptionGroup)):
            params.append(p.replace(annotation=kind))
            continue
        overrides = p.default if isinstance(p.default, _Overrides) else _Overrides()
        group_fields = dataclasses.fields(typing.cast(Any, kind))
        unknown = set(overrides) - {f.name for f in group_fields}
        if unknown:
            raise TypeError(f"{fn.__name__}: {kind.__name__} has no option {sorted(unknown)}")
        names = []
        for f in group_fields:
            option = overrides.get(f.name, f.metadata["option"])
            params.append(
                inspect.Parameter(f.name, p.kind, default=option, annotation=f.metadata["kind"])
            )
            names.append(f.name)
        groups[p.name] = (kind, names)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        for name, (kind, fields) in groups.items():
            kwargs[name] = kind(**{f: kwargs.pop(f) for f in fields})
        return fn(*args, **kwargs)

    wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in params}
    return wrapper  # type: ignore[return-value]


def quiet_libraries() -> None:
    """Keep other libraries' progress bars, logs and warnings from the user."""
    silence_library_warnings()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("TQDM_DISABLE", "1")  # library progress bars; the CLI has its own
    try:
        import transformers

        transformers.utils.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()
    except ImportError:  # pragma: no cover
        pass


def cache_arg(cache: Path | None, no_cache: bool) -> Path | bool:
    """--cache/--no-cache as the library's ``cache`` argument."""
    if no_cache:
        return False
    return cache if cache is not None else True


def parse_labels(value: str) -> Any:
    if value == "auto":
        return "auto"
    if value == "none":
        return None
    labels = [v.strip() for v in value.split(",") if v.strip()]
    if len(labels) < 2:
        raise InputDataError(f"--labels needs 'auto', 'none' or at least two labels, got {value!r}")
    return labels


def read_instructions(
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
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        if not lines:
            raise InputDataError(
                f"{instructions_file}: no instruction in it (empty or blank lines)"
            )
        found += lines
    return found or [None]


def build_task(opts: TaskOptions, *, k: int) -> Any:
    """The task the task options name, checked to hold at least ``k`` pool examples."""
    from iclopt.bandits.base import check_fits
    from iclopt.data import load_task
    from iclopt.datasets import get_task
    from iclopt.metrics import get_metric

    sources = [x for x in (opts.pool, opts.val, opts.test, opts.data) if x is not None]
    if opts.task is not None and sources:
        raise InputDataError("give either --task or data files, not both")
    if opts.task is not None:
        the_task = get_task(opts.task)
        if opts.metric != "auto":
            the_task.metric = opts.metric
    elif sources:
        the_task = load_task(
            pool=opts.pool,
            val=opts.val,
            test=opts.test,
            data=opts.data,
            input_col=opts.input_col,
            output_col=opts.output_col,
            pool_size=opts.pool_size,
            val_size=opts.val_size,
            test_size=opts.test_size,
            split_seed=opts.split_seed,
            metric=opts.metric,
            keep_overlap=opts.keep_overlap,
            labels=parse_labels(opts.labels),
        )
    else:
        raise InputDataError("no task: give --task NAME, --pool/--val/--test files, or --data FILE")
    get_metric(the_task.metric)
    check_fits(the_task, k=k)
    return the_task


def check_out_path(path: Path | None) -> None:
    """Fail now, not after the search, when ``path`` cannot be written; leave nothing."""
    if path is None:
        return
    if path.is_dir():
        raise InputDataError(f"{path}: is a directory; --out needs a file path")
    made: list[Path] = []
    folder = path.parent
    try:
        missing = [p for p in [folder, *folder.parents] if not p.exists()]
        for p in reversed(missing):
            p.mkdir()
            made.append(p)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
        os.close(fd)
        os.unlink(tmp)
    except OSError as exc:
        raise InputDataError(f"{path}: cannot write ({exc.strerror})") from None
    finally:
        for p in reversed(made):
            try:
                p.rmdir()
            except OSError:
                pass


def load_llm(
    model: str,
    *,
    base_url: str | None = None,
    api_key_env: str = "OPENAI_API_KEY",
    concurrency: int = 8,
    timeout: float = 60.0,
    max_retries: int = 5,
) -> Any:
    from iclopt.llms import BACKENDS, LLMS, backend_options, get_llm

    options = {
        "base_url": base_url,
        "api_key_env": api_key_env,
        "concurrency": concurrency,
        "timeout": timeout,
        "max_retries": max_retries,
    }
    takes = backend_options(model)
    if base_url is not None and "base_url" not in takes:
        users = [BACKENDS.get(b).usage for b in BACKENDS if "base_url" in BACKENDS.get(b).options]
        raise InputDataError(f"--base-url applies to --model {' or '.join(users)}, not {model!r}")
    note = " (the first run converts the embedded model, ~20 s)" if model in LLMS else ""
    with err.status(f"loading {model}{note} ..."):
        return get_llm(model, **{k: v for k, v in options.items() if k in takes}).prepare()


def describe(the_task: Any, llm: Any, scoring: ScoringMode) -> None:
    from iclopt.scoring import SCORERS

    by_labels = scoring.value != "auto" and SCORERS.get(scoring.value).mode == "labels"
    labels = by_labels or (scoring == ScoringMode.auto and bool(the_task.labels))
    labels = labels and llm.scores_logprobs()  # an API server may return no log-probabilities
    metric = the_task.metric if isinstance(the_task.metric, str) else "custom"
    err.print(
        f"task {the_task.name}: pool {len(the_task.pool)}, val {len(the_task.val)}, "
        f"test {len(the_task.test)}; metric {metric}; "
        f"{'label scoring' if labels else 'generation'}; model {llm.identity}",
        highlight=False,
        markup=False,
    )
    if the_task.overlap_removed:
        err.print(
            f"note: {the_task.overlap_removed} pool example(s) share their input with a "
            "validation/test query and were removed from the pool (--keep-overlap keeps them)",
            highlight=False,
            markup=False,
        )


def progress_bar(quiet: bool) -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[note]}"),
        TimeElapsedColumn(),
        console=err,
        # a bar is for a terminal: in a log file its last frame would read as the result
        disable=quiet or not err.is_terminal,
    )


def demo_table(title: str, ids: Any, demos: Any) -> Table:
    table = Table(title=Text(title))
    table.add_column("#", justify="right")
    table.add_column("pool id", justify="right")
    table.add_column("input")
    table.add_column("output")
    for pos, (pid, ex) in enumerate(zip(ids, demos), start=1):
        table.add_row(str(pos), str(pid), Text(ex.input), Text(ex.target))  # no markup
    return table


def print_result(result: Any) -> None:
    table = demo_table(
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
