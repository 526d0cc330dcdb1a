"""Paths and digests: what identifies a local model's files.

Model identities include a digest of the weights, so new weights under an old name or
file size never reuse cached answers.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from iclopt.paths import cache_dir

__all__ = ["file_digest", "folder_digest"]


def file_digest(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file's content, computed once per (path, mtime, size) and cached on disk.

    Model identities include it, so new weights under an old name or file size never
    reuse cached answers.
    """
    from iclopt.store import SQLiteStore

    p = Path(path).resolve()
    st = p.stat()
    key = f"{p}|{st.st_mtime_ns}|{st.st_size}"
    store: SQLiteStore[str] = SQLiteStore(
        cache_dir() / "file-digests.sqlite", what="file digest cache", encode=str, decode=str
    )
    try:
        found = store.get_many([key])
        if key in found:
            return found[key]
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 22), b""):
                h.update(chunk)
        digest = h.hexdigest()
        store.put_many({key: digest})
        return digest
    finally:
        store.close()


#: Files whose content decides a model folder's outputs.
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".gguf", ".json", ".model", ".txt")


def folder_digest(folder: Path, gguf_file: str | None) -> str:
    """One digest over the files that decide a local model's outputs."""
    if gguf_file:
        files = [folder / gguf_file]
    else:
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix in WEIGHT_SUFFIXES)
    h = hashlib.sha256()
    for f in files:
        h.update(f.name.encode() + b"\0" + file_digest(f).encode())
    return h.hexdigest()
