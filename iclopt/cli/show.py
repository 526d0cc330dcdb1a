"""`iclopt show`, `iclopt tasks`, `iclopt methods`: read results and registries."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.text import Text

from iclopt.cli._common import InputDataError, app, demo_table, one_line_errors, out, print_result


@app.command()
@one_line_errors
def show(
    path: Path = typer.Argument(None, help="A JSON result written by `iclopt optimize --out`."),
    query: str = typer.Option(None, help="Print the final prompt text for this query."),
    storage: str = typer.Option(
        None, help="Instead of a file: the Optuna storage of a shared study (--study)."
    ),
    study: str = typer.Option(None, help="The shared study's name in --storage."),
) -> None:
    """Print a saved result or a shared study's incumbent, or its prompt for a query."""
    from iclopt.results import OptimizationResult

    if (storage is None) != (study is None):
        raise InputDataError("a shared study needs both --storage URL and --study NAME")
    if storage is not None and study is not None:
        if path is not None:
            raise InputDataError("give either a result file or --storage/--study, not both")
        _show_study(storage, study, query)
        return
    if path is None:
        raise InputDataError("nothing to show: give a result file or --storage URL --study NAME")
    result = OptimizationResult.load(path)
    if query is not None:
        rendered = result.render(query)
        out.print(rendered, highlight=False, markup=False)
        return
    print_result(result)


def _show_study(storage: str, name: str, query: str | None) -> None:
    """The incumbent of a shared study (which may still be running)."""
    from collections import Counter

    from iclopt.data import Example
    from iclopt.prompts import Template
    from iclopt.study import read_study

    config, trials = read_study(storage, name)
    states = Counter(t.state for t in trials)
    val = [t for t in trials if t.state == "complete" and t.queries is None]
    if not val:
        raise InputDataError(
            f"study {name!r} has no completed evaluation yet ({states['running']} running)"
        )
    best = max(val, key=lambda t: (t.value, -t.number))
    demos = [
        Example(d["input"], d["output"] if isinstance(d["output"], str) else tuple(d["output"]))
        for d in best.attrs.get("demo_examples", [])
    ]
    if query is not None:
        template = Template.from_dict(config.get("template") or {})
        rendered = template.render(best.prompt.instruction, demos, query)
        out.print(rendered, highlight=False, markup=False)
        return
    rescored = sum(1 for t in trials if t.state == "complete" and t.queries is not None)
    out.print(
        f"study {name}: task {config.get('task')}, model {config.get('model')}, "
        f"method {config.get('method')}, k {config.get('k')}; "
        f"{states['complete']} evaluations done ({rescored} re-scorings), "
        f"{states['running']} running, {states['failed']} failed; "
        f"workers {len({t.attrs.get('worker') for t in trials})}",
        highlight=False,
        soft_wrap=True,
    )
    if best.prompt.instruction:
        out.print(Text.assemble(("instruction: ", "bold"), best.prompt.instruction))
    out.print(demo_table(f"Incumbent (trial {best.number})", best.prompt.demos, demos))
    out.print(
        f"val score {best.value:.3f}   (best validation score so far; the final choice of "
        "methods with re-scoring may differ)",
        highlight=False,
    )


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
    """List search, selection and attribution methods, scorers, models and metrics by name."""
    from iclopt.attribution import ATTRIBUTORS
    from iclopt.bandits import DEFAULT_METHOD, OPTIMIZERS
    from iclopt.llms import BACKENDS, LLMS
    from iclopt.metrics import METRICS
    from iclopt.scoring import SCORERS
    from iclopt.selectors import SELECTORS

    registries: list[Any] = [OPTIMIZERS, SELECTORS, ATTRIBUTORS]
    width = max(len(name) for reg in registries for name in reg)

    def listing(title: str, registry: Any, default: str | None = None) -> None:
        """One line per registered method: its name and its docstring's first line."""
        out.print(title, highlight=False, soft_wrap=True)
        for name in registry.names():
            mark = " (default)" if name == default else ""
            out.print(
                f"  {name:{width}s} {registry.get(name).description}{mark}",
                highlight=False,
                soft_wrap=True,
            )

    listing("optimize --method:", OPTIMIZERS, DEFAULT_METHOD)
    out.print("--scoring (auto: label-prob for classification, else generate):", highlight=False)
    for name in SCORERS.names():
        cls = SCORERS.get(name)
        low, high = cls.signal_range
        out.print(
            f"  {name:12s} answers by {'label argmax' if cls.mode == 'labels' else 'greedy text'}; "
            f"signal: {cls.signal_name} in [{low}, {high}]",
            highlight=False,
            soft_wrap=True,
        )
    searches = sorted(set(OPTIMIZERS.names()) - set(SELECTORS.names()))
    listing(
        f"select --method and compare --methods (compare also takes every search: "
        f"{', '.join(searches)}):",
        SELECTORS,
    )
    listing("attribute --method:", ATTRIBUTORS)
    usages = [BACKENDS.get(p).usage for p in BACKENDS.names()]
    out.print(f"--model: {', '.join([*LLMS.names(), *usages])}", highlight=False, soft_wrap=True)
    out.print(f"metrics: {', '.join(METRICS.names())}", highlight=False)
