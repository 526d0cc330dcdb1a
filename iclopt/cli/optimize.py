"""`iclopt optimize`: search the best prompt for a task."""

from __future__ import annotations

import os
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import typer

from iclopt.bandits import DEFAULT_METHOD, DEFAULT_SHARED_METHOD, OPTIMIZERS
from iclopt.bandits.base import own_options
from iclopt.cli._common import (
    O_K,
    O_QUIET,
    EvalOptions,
    IcloptError,
    InputDataError,
    LLMOptions,
    ScoringMode,
    TaskOptions,
    app,
    build_task,
    check_out_path,
    describe,
    err,
    group,
    load_llm,
    one_line_errors,
    option_groups,
    print_result,
    progress_bar,
    quiet_libraries,
    read_instructions,
)
from iclopt.cli._feedback import PhaseDisplay
from iclopt.cli.report import report_path_for, save_run


@app.command()
@one_line_errors
@option_groups
def optimize(
    source: TaskOptions = group(),
    k: int = O_K,
    budget: int = typer.Option(
        60,
        min=1,
        help="Validation evaluations the search may spend (each scores one prompt on every validation query); a racing method spends the LLM calls of this many evaluations on partial ones.",
    ),
    method: str = typer.Option(
        None,
        help=f"Search method: {', '.join(OPTIMIZERS)} (`iclopt methods` describes each). Default: {DEFAULT_METHOD}; with --storage or --workers, {DEFAULT_SHARED_METHOD} ({DEFAULT_METHOD} cannot share a study yet).",
    ),
    backend: LLMOptions = group(),
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
    option: list[str] = typer.Option(
        None,
        help="A method option KEY=VALUE (repeatable; VALUE read as JSON, else as text), e.g. --option chunk=8 --option final=0.25 for a broader racing schedule of race "
        f"(its options: {', '.join(own_options(OPTIMIZERS.get(DEFAULT_METHOD)))}; see docs/reference.md).",
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
    ev: EvalOptions = group(),
    max_llm_calls: int = typer.Option(
        None,
        min=1,
        help="Hard cap on LLM calls, cache hits included (a query costs one call, one per label under label scoring). Methods compared at equal calls get equal budgets; at least one evaluation's calls.",
    ),
    max_prompt_tokens: int = typer.Option(
        None, min=1, help="Optional hard cap on prompt tokens sent to the LLM."
    ),
    out_path: Path = typer.Option(
        None, "--out", help="Write the JSON result (prompt, scores, cost, trace, config) here."
    ),
    quiet: bool = O_QUIET,
    report: bool = typer.Option(
        False,
        "--report",
        help="Also write the run report (`iclopt report`) as an HTML page next to --out (RESULT.html).",
    ),
    storage: str = typer.Option(
        None,
        help="Share the search with other workers through this Optuna storage: sqlite:///runs/study.db on one machine, postgresql://USER@HOST/DB across machines. Start every worker with the same command; --budget is the study's total.",
    ),
    study: str = typer.Option(None, help="Name of the shared study in --storage."),
    workers: int = typer.Option(
        1,
        min=1,
        help="Local worker processes on one study, 1 torch thread each (without --storage: a temporary SQLite study).",
    ),
) -> None:
    """Search the best instruction + ordered exemplars for a task and report its scores.

    Give the task as --task NAME, as --pool, --val and --test files, or as one --data file.
    Run it again with the same arguments after a crash: paid evaluations come from the
    result cache (or, with --storage, from the study).
    """
    from iclopt.bandits import OPTIMIZERS
    from iclopt.bandits.base import check_fits
    from iclopt.bandits.model_based import ModelBasedOptimizer
    from iclopt.instructions import dedupe_instructions

    quiet_libraries()
    the_task = build_task(source, k=k)
    scoring = ev.scoring
    if method is None:
        method = DEFAULT_SHARED_METHOD if storage is not None or workers > 1 else DEFAULT_METHOD
    cls = OPTIMIZERS.get(method)
    if scoring.value != "auto":  # a scorer that does not fit the task, before any model work
        from iclopt.scoring import SCORERS

        SCORERS.get(scoring.value)().check(the_task)
    if max_llm_calls is not None and max_llm_calls < len(the_task.val):
        raise InputDataError(
            f"--max-llm-calls {max_llm_calls} is below the calls of one evaluation "
            f"(at least {len(the_task.val)}: one per validation query)"
        )
    if (storage is not None or workers > 1) and cls.partial_evaluations:
        raise InputDataError(
            f"--method {method} scores partial evaluations, which a shared study cannot hold "
            "yet; use --method best-of-n, neural, gp, ease or tpe with --storage"
        )
    method_options = parse_options(option)
    if method_options:
        from iclopt.api import check_method_options

        check_method_options(cls, method_options, task=the_task, k=k, budget=budget)
    check_fits(the_task, k=k, budget=budget, n_init=n_init)
    if issubclass(cls, ModelBasedOptimizer):
        cls.check_dependencies(embedder)
    cands = read_instructions(instruction, instructions_file)
    if instruction or instructions_file is not None:
        if not dedupe_instructions(cands):
            raise InputDataError("the instruction list is empty after de-duplication")
    else:
        cands = None
    check_out_path(out_path)
    report_path = report_path_for(out_path) if report else None
    if (storage is None) != (study is None) and not (workers > 1 and storage is None):
        raise InputDataError("a shared study needs both --storage URL and --study NAME")
    with ExitStack() as stack:
        if workers > 1 and storage is None:
            folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="iclopt-study-"))
            storage, study = f"sqlite:///{Path(folder) / 'study.db'}", "iclopt"
        if storage is not None:
            from iclopt.study import check_storage

            check_storage(storage)
        _search(
            the_task,
            spawn=workers - 1,
            storage=storage,
            study=study,
            out_path=out_path,
            report_path=report_path,
            quiet=quiet,
            budget=budget,
            scoring=scoring,
            backend=backend,
            search={
                "k": k,
                "budget": budget,
                "method": method,
                "seed": seed,
                "instructions": cands,
                "generate_instructions": generate_instructions,
                "n_init": n_init,
                "embedder": embedder,
                "template": ev.make_template(),
                "scoring": scoring.value,
                "max_new_tokens": ev.max_new_tokens,
                "max_llm_calls": max_llm_calls,
                "max_prompt_tokens": max_prompt_tokens,
                "method_options": method_options or None,
                "cache": ev.cache_arg(),
            },
            task_source=source.source(),
        )


def parse_options(pairs: list[str] | None) -> dict[str, Any]:
    """``KEY=VALUE`` strings as a dict (values parsed as JSON where they parse)."""
    import json

    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise InputDataError(f"--option {pair!r}: expected KEY=VALUE")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


def _worker(the_task: Any, backend: LLMOptions, search: dict[str, Any], study: Any) -> int:
    """One spawned worker process: 1 torch thread, its own LLM, the shared study."""
    import torch

    from iclopt.api import optimize as run_optimize

    torch.set_num_threads(1)
    quiet_libraries()
    err.quiet = True  # the first process reports; errors come back through the future
    llm = load_llm(**backend.as_kwargs())
    result = run_optimize(the_task, llm=llm, evaluate_test=False, **search, **study)
    return len(result.trace)


def _search(
    the_task: Any,
    *,
    spawn: int,
    storage: str | None,
    study: str | None,
    out_path: Path | None,
    report_path: Path | None,
    quiet: bool,
    budget: int,
    scoring: ScoringMode,
    backend: LLMOptions,
    search: dict[str, Any],
    task_source: dict[str, Any],
) -> None:
    """Run the search here (and in ``spawn`` more local worker processes), then report."""
    from iclopt.api import optimize as run_optimize

    shared: dict[str, Any] = {"storage": storage, "study": study} if storage is not None else {}
    with ExitStack() as stack:
        futures = []
        if spawn:
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            import torch

            torch.set_num_threads(1)
            os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
            pool = stack.enter_context(
                ProcessPoolExecutor(spawn, mp_context=multiprocessing.get_context("spawn"))
            )
            futures = [
                pool.submit(_worker, the_task, backend, search, shared) for _ in range(spawn)
            ]
            err.print(
                f"started {spawn} more worker process(es) on study {study!r}",
                highlight=False,
                markup=False,
            )
        from iclopt.api import estimate_search

        llm = load_llm(**backend.as_kwargs())
        describe(the_task, llm, scoring)
        est = estimate_search(
            the_task,
            llm,
            k=search["k"],
            budget=budget,
            method=search["method"],
            scoring=search["scoring"],
            template=search["template"],
            max_llm_calls=search["max_llm_calls"],
            seed=search["seed"],
        )
        if not quiet:
            err.print(
                f"estimate: {est['calls']:,} LLM calls ({est['calls_per_query']} per query, "
                f"cache hits included), ~{est['prompt_tokens']:,} prompt tokens; "
                f"method {search['method']}, scorer {est['scorer']}",
                highlight=False,
                markup=False,
            )
        best = [float("-inf")]
        spent = [0]
        tracker: list[Any] = []  # the study, opened once for the progress bar
        with progress_bar(quiet) as progress:
            by_calls = storage is None
            bar = progress.add_task(
                "searching (LLM calls)" if by_calls else "searching",
                total=est["calls"] if by_calls else budget,
                note="",
            )

            def on_step(entry: Any, ev: Any) -> None:
                if entry.on_val:
                    best[0] = max(best[0], entry.score)
                src = entry.info.get("source") or ""
                spent[0] += entry.cost.calls
                left = f"{max(0, est['calls'] - spent[0]):,} calls left" if by_calls else "study"
                # a racing search scores partial evaluations only: no full score to show
                shown = f"best val {best[0]:.3f} " if best[0] > float("-inf") else ""
                note = f"{shown}({src}; {left})"
                if storage is not None and study is not None:  # every worker's trials
                    from iclopt.study import SharedStudy

                    if not tracker:
                        tracker.append(SharedStudy(storage, study).open({}, create=False))
                    trials = tracker[0].trials()
                    done = [t for t in trials if t.state == "complete"]
                    val = [t.value for t in done if t.queries is None and t.value is not None]
                    best[0] = max([best[0], *val])
                    note = f"best val {best[0]:.3f} ({src}; study)"
                    progress.update(bar, completed=len(done), note=note)
                    return
                progress.update(bar, advance=entry.cost.calls, note=note)

            phases = PhaseDisplay(lambda text: progress.update(bar, description=text))
            with phases.installed():
                result = run_optimize(the_task, llm=llm, on_step=on_step, **search, **shared)
        for i, f in enumerate(futures, start=2):
            try:
                f.result()
            except IcloptError as exc:
                err.print(f"warning: worker {i} failed: {exc}", highlight=False, markup=False)
            except Exception as exc:  # a crashed process: its trials were given back
                err.print(
                    f"warning: worker {i} failed: {type(exc).__name__}: {exc}",
                    highlight=False,
                    markup=False,
                )
    result.config["task_source"] = task_source
    if not quiet or out_path is None:
        print_result(result)
    save_run(result, out_path, report_path, quiet=quiet)
