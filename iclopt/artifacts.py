"""Writing artifacts: atomically, and with the file mode the user's umask gives new files.

Every file iclopt hands to a person (result JSON, comparison tables and plots, attribution
and run reports) goes through :func:`write_files`: each file is written to a temporary
file in its destination folder and moved into place only once all of them are complete,
so a failure leaves no half-written artifact. :func:`tempfile.mkstemp` creates files with
mode ``0600``; the files are given ``0666 & ~umask`` before they are moved, as
``open(path, "w")`` would, so a report copied to a shared folder or served by a web server
stays readable by the people the user's umask allows. A folder artifact (an exported or
converted model) is built under a temporary name beside its destination and moved into
place whole, by :func:`staged_folder`.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from iclopt.errors import InputDataError

__all__ = [
    "default_file_mode",
    "json_safe",
    "json_text",
    "reading",
    "staged_folder",
    "write_files",
    "write_json_atomic",
]


def default_file_mode() -> int:
    """``0o666`` minus the process's umask: the mode ``open(path, "w")`` gives a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def json_safe(value: Any) -> Any:
    """``value`` as JSON can hold it: non-finite floats as ``None``, numpy values as Python's.

    Tuples become lists and keys strings.

    Example:
        >>> json_safe({"a": float("nan"), 1: (2.5, float("inf"))})
        {'a': None, '1': [2.5, None]}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and callable(value.tolist):  # numpy scalars and arrays
        return json_safe(value.tolist())
    return value


def json_text(obj: Any) -> str:
    """The JSON form iclopt writes: indented, UTF-8 (not ASCII-escaped), newline-terminated."""
    return json.dumps(obj, indent=2, ensure_ascii=False) + "\n"


def write_files(files: Mapping[str | os.PathLike[str], str | bytes]) -> list[Path]:
    """Write several files all-or-nothing, each atomically, with the umask's file mode.

    Folders are created as needed. Text is written as UTF-8.

    Args:
        files: Destination path -> content.

    Returns:
        The paths written, in the order given.

    Raises:
        InputDataError: A destination cannot be written (one line naming it); no file
            of the call is then left behind.

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> [p.name for p in write_files({d / "a.txt": "hi", d / "b.bin": b"\\x00"})]
        ['a.txt', 'b.bin']
    """
    mode = default_file_mode()
    staged: list[tuple[str, Path]] = []
    try:
        for dest, content in files.items():
            path = Path(dest)
            if path.is_dir():
                raise InputDataError(f"{path}: is a directory, expected a file path")
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
            except OSError as exc:
                raise InputDataError(f"{path}: cannot write ({exc.strerror})") from None
            staged.append((tmp, path))
            data = content.encode("utf-8") if isinstance(content, str) else content
            try:
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                os.chmod(tmp, mode)
            except OSError as exc:
                raise InputDataError(f"{path}: cannot write ({exc.strerror})") from None
        for tmp, path in staged:
            try:
                os.replace(tmp, path)
            except OSError as exc:
                raise InputDataError(f"{path}: cannot write ({exc.strerror})") from None
        return [path for _, path in staged]
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)


def write_json_atomic(path: str | os.PathLike[str], obj: Any) -> None:
    """Write ``obj`` as JSON to ``path`` atomically (see :func:`write_files`)."""
    write_files({path: json_text(obj)})


@contextmanager
def staged_folder(target: str | os.PathLike[str], *, keep_existing: bool = False) -> Iterator[Path]:
    """Build a folder under a temporary name beside ``target``, then move it into place.

    The body writes into the yielded folder (created empty); when it returns, the folder
    is renamed to ``target`` (an empty folder there is replaced). Whatever happens, no
    temporary folder is left behind.

    Args:
        target: Where the folder ends up.
        keep_existing: When ``target`` appears while the body runs (another process built
            the same folder first), keep it and drop this one instead of raising.

    Raises:
        OSError: The folder cannot be moved into place (and ``keep_existing`` does not
            apply).

    Example:
        >>> import tempfile, pathlib
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> with staged_folder(d / "model") as tmp:
        ...     _ = (tmp / "config.json").write_text("{}")
        >>> sorted(p.name for p in d.iterdir()), (d / "model" / "config.json").is_file()
        (['model'], True)
    """
    out = Path(target)
    tmp = out.with_name(f".{out.name}.tmp{os.getpid()}-{time.time_ns()}")
    try:
        tmp.mkdir(parents=True)
        yield tmp
        if out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        try:
            tmp.rename(out)
        except OSError:
            if not (keep_existing and out.is_dir()):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def reading(path: str | os.PathLike[str], what: str, expected: str) -> Iterator[None]:
    """Turn the ways reading an artifact fails into one :class:`InputDataError` line.

    Args:
        path: The file being read (named in the message).
        what: What it should be, for "not an iclopt WHAT" (``"result"``).
        expected: What a folder was given instead of (``"a result file"``).

    Example:
        >>> with reading("r.json", "result", "a result file"):  # doctest: +SKIP
        ...     json.loads(Path("r.json").read_text())
    """
    try:
        yield
    except InputDataError:
        raise
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputDataError(f"{path}: is a directory, expected {expected}") from None
    except (
        OSError,
        AttributeError,
        UnicodeDecodeError,
        json.JSONDecodeError,
        KeyError,
        TypeError,
        ValueError,
    ) as exc:
        raise InputDataError(
            f"{path}: not an iclopt {what} ({type(exc).__name__}: {exc})"
        ) from None
