"""Export a registered local model to a plain Hugging Face folder another server can load.

The embedded SmolLM2 ships as a GGUF file; ``transformers`` loads it de-quantized but
leaves a quantizer tag on the model (``hf_quantizer``, ``config.quantization_config``).
A folder saved with that tag (or without ``architectures`` in its config) cannot be
loaded by ``transformers serve``, vLLM or TGI. :func:`export_model` drops the tag, sets
``architectures`` and saves weights and tokenizer to a new folder, atomically.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from iclopt.artifacts import staged_folder
from iclopt.errors import InputDataError
from iclopt.llms.hf import HFModel

__all__ = ["export_model", "plain_hf_model"]

logger = logging.getLogger(__name__)


def plain_hf_model(model: Any) -> Any:
    """Make a loaded ``transformers`` model savable as a plain (unquantized) checkpoint.

    Drops the quantizer tag a GGUF load leaves behind and records the model class in
    ``config.architectures``.

    Args:
        model: A loaded ``PreTrainedModel``.

    Returns:
        The same model, modified in place.
    """
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.config.architectures = [type(model).__name__]
    return model


def export_model(name: str, target: str | os.PathLike[str]) -> Path:
    """Save the registered model ``name`` as a plain Hugging Face folder at ``target``.

    Args:
        name: A registered local model (``"smollm2"``), a model folder or a ``.gguf`` file.
        target: A folder that does not exist yet (or is empty).

    Returns:
        ``target`` as a path.

    Raises:
        InputDataError: ``target`` is a file or a non-empty folder, or cannot be written,
            or ``name`` is not a local ``transformers`` model.
        UnknownNameError: ``name`` is not a known model.

    Example:
        >>> export_model("smollm2", "/tmp/smollm2-hf")  # doctest: +SKIP
        PosixPath('/tmp/smollm2-hf')
    """
    from iclopt.llms import get_llm

    out = Path(target)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputDataError(f"{out}: exists and is not an empty folder; choose a new folder")
    llm = get_llm(name)
    if not isinstance(llm, HFModel):
        raise InputDataError(f"{name!r} is not a local transformers model; nothing to export")
    llm.load()
    model = plain_hf_model(llm.hf_model)
    try:
        with staged_folder(out) as tmp:  # an empty folder at out (checked above) is replaced
            model.save_pretrained(tmp)
            llm.tokenizer.save_pretrained(tmp)
    except OSError as exc:
        raise InputDataError(f"{out}: cannot write the exported model ({exc.strerror})") from None
    logger.info("exported %s to %s", llm.identity, out)
    return out
