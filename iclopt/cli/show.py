"""`iclopt show`, `iclopt tasks`, `iclopt methods`: read results and registries."""

from __future__ import annotations

from pathlib import Path

import typer

from iclopt.cli._common import app, one_line_errors, out, print_result


@app.command()
@one_line_errors
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
    print_result(result)


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
    from iclopt.bandits import DEFAULT_METHOD, DESCRIPTIONS, OPTIMIZERS
    from iclopt.llms import LLMS
    from iclopt.metrics import METRICS
    from iclopt.selectors import SELECTORS

    out.print("optimize --method:", highlight=False)
    for name in OPTIMIZERS.names():
        mark = " (default)" if name == DEFAULT_METHOD else ""
        out.print(
            f"  {name:10s} {DESCRIPTIONS.get(name, '')}{mark}", highlight=False, soft_wrap=True
        )
    for title, reg in (
        ("compare --methods", SELECTORS),
        ("models", LLMS),
        ("metrics", METRICS),
    ):
        out.print(f"{title}: {', '.join(reg.names())}", highlight=False)
