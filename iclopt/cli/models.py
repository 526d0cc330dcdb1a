"""`iclopt models export`: save a local model as a plain folder an HTTP server can serve."""

from __future__ import annotations

from pathlib import Path

import typer

from iclopt.cli._common import app, err, one_line_errors, quiet_libraries

models_app = typer.Typer(
    name="models",
    help="Local models: export one for an OpenAI-compatible server (vLLM, transformers serve).",
    no_args_is_help=True,
    rich_markup_mode=None,
)
app.add_typer(models_app)


@models_app.command("export")
@one_line_errors
def export(
    model: str = typer.Argument(
        ..., help="Model to export: 'smollm2', a model folder or a .gguf file."
    ),
    target: Path = typer.Argument(..., help="New (or empty) folder to write."),
) -> None:
    """Write MODEL to TARGET as a plain Hugging Face folder (safetensors, config, tokenizer).

    Serve it with e.g. `transformers serve TARGET` or `vllm serve TARGET`, then run
    `iclopt optimize --model openai:TARGET --base-url http://HOST:PORT/v1`.
    """
    from iclopt.llms.export import export_model

    quiet_libraries()
    with err.status(f"exporting {model} ..."):
        path = export_model(model, target)
    err.print(f"wrote {path}", highlight=False, markup=False)
