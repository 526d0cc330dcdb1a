"""Examples, tasks and the loaders that build them from files or HF datasets.

Supported sources:

* instruction-induction JSON (``{"metadata": ..., "examples": {"1": {...}, ...}}``), with
  the task-specific gold-answer fields of Honovich et al. (2022) applied automatically;
* JSON (a list of objects, or ``{"examples": [...]}``), JSONL and CSV files;
* HF ``datasets``: a directory written by ``Dataset.save_to_disk``, a local ``.parquet``
  or ``.arrow`` file, or ``hf:NAME[:CONFIG][@SPLIT]`` for a hub dataset (online only).
"""

from __future__ import annotations

import csv
import io
import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from iclopt.errors import InputDataError, MissingDependencyError

__all__ = [
    "DEFAULT_SIZES",
    "Example",
    "Task",
    "infer_labels",
    "is_instruction_induction",
    "load_examples",
    "load_task",
    "read_records",
]

logger = logging.getLogger(__name__)

#: Default (pool, val, test) sizes: the EASE protocol (Wu et al., 2024).
DEFAULT_SIZES = (100, 20, 100)


@dataclass(frozen=True)
class Example:
    """One labeled input/output pair.

    Args:
        input: The input text.
        output: The gold answer, or a tuple of acceptable answers whose first element is
            the one shown when the example is used as a demonstration.
        id: A stable identifier (the key in the source file, or the row number).

    Example:
        >>> Example("pig", ("big", "dig"), id="1").answers
        ('big', 'dig')
    """

    input: str
    output: str | tuple[str, ...]
    id: str = ""

    @property
    def target(self) -> str:
        """The answer shown in a demonstration."""
        return self.output if isinstance(self.output, str) else self.output[0]

    @property
    def answers(self) -> tuple[str, ...]:
        """All acceptable answers."""
        return (self.output,) if isinstance(self.output, str) else tuple(self.output)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serializable form."""
        out: Any = self.output if isinstance(self.output, str) else list(self.output)
        return {"id": self.id, "input": self.input, "output": out}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Example:
        """Inverse of :meth:`as_dict` (a list of answers becomes a tuple; no id is "")."""
        out = d["output"]
        return cls(d["input"], out if isinstance(out, str) else tuple(out), id=str(d.get("id", "")))


@dataclass
class Task:
    """A task: a pool of candidate demonstrations, validation and test queries.

    Args:
        name: Short name used in reports and artifacts.
        pool: Candidate demonstrations; :class:`~iclopt.prompts.Prompt` ids index it.
        val: Queries the search scores prompts on.
        test: Held-out queries scored once, on the final prompt.
        metric: A metric name from :mod:`iclopt.metrics` or a callable
            ``(prediction, answers) -> float``.
        labels: The label set of a classification task, or ``None``.
        overlap_removed: Pool examples dropped at load time because their input is also a
            validation or test input (see :func:`load_task`).
    """

    name: str
    pool: list[Example]
    val: list[Example]
    test: list[Example] = field(default_factory=list)
    metric: Any = "exact_match"
    labels: tuple[str, ...] | None = None
    overlap_removed: int = 0

    def __post_init__(self) -> None:
        if not self.pool:
            raise InputDataError(f"task {self.name!r}: the pool is empty")
        if not self.val:
            raise InputDataError(f"task {self.name!r}: the validation set is empty")


# ----------------------------------------------------------------------------- reading


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise InputDataError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputDataError(f"{path}: is a directory, expected a file") from None
    except OSError as exc:
        raise InputDataError(f"{path}: cannot read ({exc.strerror})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InputDataError(f"{path}: not valid UTF-8 (byte {exc.start})") from None


def _json_records(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputDataError(
            f"{path}: invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}"
        ) from None
    if isinstance(obj, dict):
        for key in ("examples", "data", "rows"):
            if key in obj:
                obj = obj[key]
                break
        else:
            raise InputDataError(f"{path}: expected a list of examples or an 'examples' field")
    if isinstance(obj, dict):  # instruction-induction: {"1": {...}, "2": {...}}
        items = list(obj.items())
    elif isinstance(obj, list):
        items = [(str(i), rec) for i, rec in enumerate(obj)]
    else:
        raise InputDataError(f"{path}: expected a list of examples, got {type(obj).__name__}")
    records = []
    for key, rec in items:
        if not isinstance(rec, dict):
            raise InputDataError(f"{path}: example {key!r} is not an object")
        records.append({"__id__": str(key), **rec})
    return records


def _jsonl_records(path: Path, text: str) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputDataError(f"{path}: invalid JSON on line {lineno}: {exc.msg}") from None
        if not isinstance(rec, dict):
            raise InputDataError(f"{path}: line {lineno} is not a JSON object")
        records.append({"__id__": str(len(records)), **rec})
    return records


def _csv_records(path: Path, text: str) -> list[dict[str, Any]]:
    reader = csv.DictReader(io.StringIO(text))
    try:
        rows = list(reader)
    except csv.Error as exc:
        raise InputDataError(f"{path}: invalid CSV: {exc}") from None
    return [{"__id__": str(i), **row} for i, row in enumerate(rows)]


def _hf_records(source: str) -> list[dict[str, Any]]:
    try:
        import datasets
    except ImportError:  # pragma: no cover - datasets is a core dependency
        raise MissingDependencyError("reading HF datasets needs `pip install datasets`") from None
    path = Path(source)
    try:
        if source.startswith("hf:"):
            spec = source[3:]
            name, _, split = spec.partition("@")
            name, _, config = name.partition(":")
            ds = datasets.load_dataset(name, config or None, split=split or "train")
        elif path.is_dir():
            ds = datasets.load_from_disk(str(path))
            if isinstance(ds, datasets.DatasetDict):
                ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        else:
            builder = "parquet" if path.suffix == ".parquet" else "arrow"
            ds = datasets.load_dataset(builder, data_files=str(path), split="train")
    except FileNotFoundError:
        if path.is_dir():
            raise InputDataError(
                f"{source}: is a directory, not a data file or a saved dataset"
            ) from None
        raise InputDataError(f"{source}: dataset not found") from None
    except InputDataError:
        raise
    except Exception as exc:  # datasets raises many types (ConnectionError, DatasetNotFound)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputDataError(f"{source}: cannot load dataset ({first})") from None
    return [{"__id__": str(i), **row} for i, row in enumerate(ds)]


def is_instruction_induction(source: str | os.PathLike[str]) -> bool:
    """Whether ``source`` is an instruction-induction JSON file (``metadata`` + keyed examples).

    Such tasks are scored with the protocol's ``ii_`` metrics by default.
    """
    path = Path(str(source))
    if path.suffix.lower() != ".json" or not path.is_file():
        return False
    try:
        obj = json.loads(path.read_bytes().decode("utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return False
    return (
        isinstance(obj, dict)
        and "metadata" in obj
        and isinstance(obj.get("examples"), dict)
        and all(str(k).isdigit() for k in obj["examples"])
    )


def read_records(source: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Read raw records (dicts) from a file, directory or ``hf:`` dataset spec.

    Each record gets an ``__id__`` key: the key in an instruction-induction file, else the
    row number.

    Raises:
        InputDataError: The source is missing, unreadable, not UTF-8 or malformed.
    """
    source = str(source)
    if source.startswith("hf:"):
        return _hf_records(source)
    path = Path(source)
    if path.is_dir() or path.suffix in (".parquet", ".arrow"):
        if not path.exists():
            raise InputDataError(f"{path}: file not found")
        return _hf_records(source)
    text = _read_text(path)
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        return _jsonl_records(path, text)
    if suffix == ".csv":
        return _csv_records(path, text)
    if suffix == ".json":
        return _json_records(path, text)
    stripped = text.lstrip()
    if stripped.startswith(("[", "{")):
        try:
            return _json_records(path, text)
        except InputDataError:
            return _jsonl_records(path, text)
    raise InputDataError(f"{path}: unknown format (use .json, .jsonl, .csv or .parquet)")


def _as_text(value: Any, where: str, col: str) -> str:
    if value is None:
        raise InputDataError(f"{where}: column {col!r} is empty")
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise InputDataError(f"{where}: column {col!r} must be text, got {type(value).__name__}")


def _answers(value: Any, where: str, col: str) -> str | tuple[str, ...]:
    if isinstance(value, (list, tuple)):
        answers = tuple(_as_text(v, where, col) for v in value)
        if not answers:
            raise InputDataError(f"{where}: column {col!r} is an empty list")
        return answers
    return _as_text(value, where, col)


def _merge(shown: str, extra: Sequence[Any]) -> tuple[str, ...]:
    return (shown, *[str(a) for a in extra if str(a) != shown])


def _instruction_induction(rec: Mapping[str, Any]) -> tuple[Any, Any] | None:
    """Gold fields of the instruction-induction tasks (see the benchmark README)."""
    if "cause" in rec and "effect" in rec and "input" not in rec:
        cause, effect = str(rec["cause"]), str(rec["effect"])
        flip = int.from_bytes(str(rec.get("__id__", "")).encode(), "little") % 2
        first, second = (effect, cause) if flip else (cause, effect)
        return f"Sentence 1: {first} Sentence 2: {second}", (cause,)
    if "items" in rec and "all_common_concepts" in rec:
        items = [str(x) for x in rec["items"][:-1]]
        concepts = [str(x) for x in rec["all_common_concepts"]]
        return ", ".join(items), tuple(concepts)
    for key in ("possible_translations", "other_rhymes"):
        if key in rec and "input" in rec and "output" in rec:
            extra = rec[key]
            if isinstance(extra, str):  # some files keep the list as its repr
                try:
                    extra = json.loads(extra.replace("'", '"'))
                except json.JSONDecodeError:
                    extra = [extra]
            return rec["input"], _merge(str(rec["output"]), extra)
    return None


def load_examples(
    source: str | os.PathLike[str],
    *,
    input_col: str = "input",
    output_col: str = "output",
) -> list[Example]:
    """Load examples from ``source`` (see :func:`read_records` for formats).

    Args:
        source: Path or ``hf:`` spec.
        input_col: Column holding the input text.
        output_col: Column holding the answer (a string or a list of answers).

    Raises:
        InputDataError: The source cannot be read or a record lacks a column.
    """
    records = read_records(source)
    examples = []
    default_cols = input_col == "input" and output_col == "output"
    for rec in records:
        where = f"{source}: example {rec['__id__']!r}"
        special = _instruction_induction(rec) if default_cols else None
        if special is not None:
            inp, out = special
        else:
            for col in (input_col, output_col):
                if col not in rec:
                    cols = ", ".join(k for k in rec if k != "__id__")
                    raise InputDataError(f"{where}: no column {col!r} (columns: {cols})")
            inp, out = rec[input_col], rec[output_col]
        examples.append(
            Example(
                input=_as_text(inp, where, input_col),
                output=_answers(out, where, output_col),
                id=str(rec["__id__"]),
            )
        )
    return examples


def infer_labels(
    pool: Sequence[Example], others: Sequence[Example] = (), *, max_labels: int = 10
) -> tuple[str, ...] | None:
    """Guess whether a task is classification and return its label set.

    A task counts as classification when the pool has at most ``max_labels`` distinct
    single-answer targets of at most three words, each used at least twice on average,
    and every answer of ``others`` (val/test) is one of them.
    """
    if any(not isinstance(ex.output, str) for ex in [*pool, *others]):
        return None
    labels = sorted({ex.target for ex in pool})
    if not 2 <= len(labels) <= max_labels or len(pool) < 2 * len(labels):
        return None
    if any(len(lab.split()) > 3 or not lab.strip() for lab in labels):
        return None
    if any(ex.target not in labels for ex in others):
        return None
    return tuple(labels)


def _split_sizes(n: int, sizes: tuple[int | None, int | None, int | None]) -> tuple[int, ...]:
    want = [s if s is not None else n for s in sizes]
    if sum(want) <= n:
        return tuple(want)
    scale = n / sum(want)
    got = [max(1, math.floor(w * scale)) for w in want]
    logger.warning(
        "only %d examples for pool/val/test sizes %s; splitting as %s", n, tuple(want), got
    )
    return tuple(got)


def load_task(
    *,
    pool: str | os.PathLike[str] | None = None,
    val: str | os.PathLike[str] | None = None,
    test: str | os.PathLike[str] | None = None,
    data: str | os.PathLike[str] | None = None,
    name: str | None = None,
    input_col: str = "input",
    output_col: str = "output",
    pool_size: int | None = DEFAULT_SIZES[0],
    val_size: int | None = DEFAULT_SIZES[1],
    test_size: int | None = DEFAULT_SIZES[2],
    split_seed: int | None = 0,
    metric: Any = "auto",
    labels: Sequence[str] | str | None = "auto",
    keep_overlap: bool = False,
) -> Task:
    """Build a :class:`Task` from three split files or from one file split by seed.

    Args:
        pool: File of candidate demonstrations (with ``val`` and optionally ``test``).
        val: File of validation queries.
        test: File of test queries (optional).
        data: One file to shuffle with ``split_seed`` and cut into val / test / pool.
        name: Task name; defaults to the file stem.
        input_col: Input column name.
        output_col: Output column name.
        pool_size: Cap on the pool (the first items); ``None`` keeps all.
        val_size: Cap on the validation set.
        test_size: Cap on the test set.
        split_seed: Seed of the shuffle when ``data`` is given.
        metric: Metric name, callable, or ``"auto"``: the instruction-induction protocol's
            metric for instruction-induction files, else the sign- and decimal-aware
            ``exact_match`` (``label_accuracy`` for classification).
        labels: Label set (a sequence, or one comma-separated string), ``"auto"`` to infer
            it, or ``None`` for a generation task. Given labels must cover every answer.
        keep_overlap: Keep pool examples whose input is also a validation or test input.
            By default they are removed (before the pool is capped at ``pool_size``):
            otherwise per-query retrieval turns into look-up of the answer. The count is
            logged and kept in ``Task.overlap_removed``.

    Raises:
        InputDataError: Sources are missing, inconsistent or malformed.
    """
    for size_name, size in (
        ("pool_size", pool_size),
        ("val_size", val_size),
        ("test_size", test_size),
    ):
        if size is not None and size < 1:
            raise InputDataError(f"{size_name} must be >= 1, got {size}")
    kw = {"input_col": input_col, "output_col": output_col}
    if data is not None:
        if pool is not None or val is not None or test is not None:
            raise InputDataError("give either --data or --pool/--val/--test, not both")
        examples = load_examples(data, **kw)
        if len(examples) < 2:
            raise InputDataError(f"{data}: need at least 2 examples to split, got {len(examples)}")
        order = np.random.default_rng(split_seed).permutation(len(examples))
        shuffled = [examples[i] for i in order]
        n_pool, n_val, n_test = _split_sizes(len(shuffled), (pool_size, val_size, test_size))
        val_ex = shuffled[:n_val]
        test_ex = shuffled[n_val : n_val + n_test]
        pool_ex = shuffled[n_val + n_test :]
        pool_size = n_pool
        stem = Path(str(data)).stem
    else:
        if pool is None or val is None:
            raise InputDataError("need --pool and --val (and optionally --test), or --data")
        pool_ex = load_examples(pool, **kw)
        val_ex = load_examples(val, **kw)[:val_size]
        test_ex = load_examples(test, **kw)[:test_size] if test is not None else []
        stem = Path(str(pool)).stem
    if not pool_ex:
        raise InputDataError(f"{pool if data is None else data}: the pool is empty")
    if not val_ex:
        raise InputDataError(f"{val if data is None else data}: the validation set is empty")
    removed = 0
    if not keep_overlap:
        pool_ex, removed = _drop_overlap(pool_ex, [*val_ex, *test_ex])
        if removed:
            logger.warning(
                "%d pool example(s) share their input with a validation or test query and "
                "were removed from the pool (keep them with keep_overlap=True / --keep-overlap)",
                removed,
            )
        if not pool_ex:
            raise InputDataError("every pool example is also a validation or test query")
    if pool_size is not None:
        pool_ex = pool_ex[:pool_size]
    task_name = name or stem
    from iclopt.metrics import default_metric_for

    if isinstance(labels, str) and labels == "auto":
        label_set = infer_labels(pool_ex, [*val_ex, *test_ex])
    elif labels is None:
        label_set = None
    else:
        label_set = _explicit_labels(labels, pool_ex, val_ex, test_ex)
    protocol = data is None and pool is not None and is_instruction_induction(pool)
    chosen_metric = (
        default_metric_for(task_name, label_set, protocol=protocol) if metric == "auto" else metric
    )
    return Task(
        task_name,
        pool_ex,
        val_ex,
        test_ex,
        metric=chosen_metric,
        labels=label_set,
        overlap_removed=removed,
    )


def _drop_overlap(pool: list[Example], queries: Sequence[Example]) -> tuple[list[Example], int]:
    """Pool examples whose input (stripped) is not a query input; and how many were dropped."""
    seen = {q.input.strip() for q in queries}
    kept = [ex for ex in pool if ex.input.strip() not in seen]
    return kept, len(pool) - len(kept)


def _explicit_labels(
    labels: Sequence[str] | str,
    pool: Sequence[Example],
    val: Sequence[Example],
    test: Sequence[Example],
) -> tuple[str, ...]:
    """Validate a user-given label set: every answer of every split must be one of them."""
    if isinstance(labels, str):
        labels = [part.strip() for part in labels.split(",")]
    label_set = tuple(dict.fromkeys(lab.strip() for lab in labels if lab.strip()))
    if len(label_set) < 2:
        raise InputDataError(f"a label set needs at least two labels, got {list(label_set)}")
    for split, examples in (("pool", pool), ("val", val), ("test", test)):
        bad = [ex for ex in examples if not any(a in label_set for a in ex.answers)]
        if bad:
            ex = bad[0]
            raise InputDataError(
                f"{split} example {ex.id!r} has answer {ex.target!r}, which is not one of the "
                f"labels {list(label_set)} ({len(bad)} such {split} examples; labels are "
                "case-sensitive)"
            )
    return label_set
