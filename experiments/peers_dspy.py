"""DSPy on iclopt's LLM: a ``dspy.BaseLM`` over an iclopt backend, two adapters, the optimizers.

Used by ``experiments/peers.py``; needs the ``bench`` extra (``pip install -e ".[bench]"``).

- :class:`IcloptLM` answers every DSPy call with an iclopt :class:`~iclopt.llms.LLM`
  (the in-process SmolLM2 by default). It counts each call and its prompt tokens itself,
  split into *task* calls (the program being optimized) and *meta* calls (instruction
  proposals, dataset summaries, reflections), and into phases (``compile``, ``test``).
  Concurrent calls (DSPy's ``num_threads``) are gathered into one batched ``generate``.
  Answers are kept in iclopt's result cache; a cached answer still counts as a call.
- :class:`ShippedChatAdapter` is DSPy's ``ChatAdapter`` unchanged; it only tells the LM
  whether a call is a task call. :class:`CompletionAdapter` renders task calls as iclopt
  does (``Template().render_text``: "Input: ...\\nOutput:"), so the comparison is about
  search, not formatting; the optimizers' own meta prompts keep DSPy's chat format.
- :func:`build_optimizer` sets each DSPy optimizer to (about) a call budget.

DSPy 3.4 marks ``BaseLM.forward`` subclasses as deprecated (engines replace them in
3.5); the warning is silenced for this class only.
"""

from __future__ import annotations

import contextvars
import hashlib
import json
import os
import queue
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no cost-map download
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import dspy
from dspy.adapters.chat_adapter import ChatAdapter
from dspy.clients._deprecation import adapter_message_call

from iclopt.data import Example
from iclopt.evaluation import ResultCache
from iclopt.llms.base import LLM
from iclopt.prompts import Template

warnings.filterwarnings(
    "ignore", message="Implementing custom LMs through BaseLM.forward", category=DeprecationWarning
)

#: The task's DSPy signature: one input field, one output field (iclopt's names).
TASK_FIELDS = (("input",), ("output",))
DEFAULT_INSTRUCTIONS = dspy.Signature("input -> output").instructions

_TASK_CALL: contextvars.ContextVar[bool] = contextvars.ContextVar("task_call", default=False)
_RAW_TEXT: contextvars.ContextVar[bool] = contextvars.ContextVar("raw_text", default=False)


def task_signature() -> type[dspy.Signature]:
    """``input -> output`` with DSPy's default instructions."""
    return dspy.Signature("input -> output")


def is_task_signature(signature: type[dspy.Signature]) -> bool:
    """Whether a signature is the task's (instructions may have been rewritten)."""
    return (
        tuple(signature.input_fields),
        tuple(signature.output_fields),
    ) == TASK_FIELDS


# ---------------------------------------------------------------------- accounting
@dataclass
class Ledger:
    """Calls and prompt tokens, per (phase, kind); kind is ``task`` or ``meta``."""

    counts: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, phase: str, kind: str, *, calls: int, tokens: int, hits: int) -> None:
        row = self.counts.setdefault(
            f"{phase}/{kind}", {"calls": 0, "prompt_tokens": 0, "cache_hits": 0}
        )
        row["calls"] += calls
        row["prompt_tokens"] += tokens
        row["cache_hits"] += hits

    def total(self, phase: str | None = None, kind: str | None = None) -> dict[str, int]:
        out = {"calls": 0, "prompt_tokens": 0, "cache_hits": 0}
        for key, row in self.counts.items():
            p, k = key.split("/")
            if (phase is None or p == phase) and (kind is None or k == kind):
                for name in out:
                    out[name] += row[name]
        return out


@dataclass
class _Request:
    text: str
    max_tokens: int
    stop: tuple[str, ...]
    temperature: float
    seed: int
    future: Future[str] = field(default_factory=Future)


class IcloptLM(dspy.BaseLM):
    """A DSPy LM answered by an iclopt LLM (greedy at temperature 0, seeded sampling above).

    Args:
        llm: The iclopt backend (``iclopt.llms.get_llm("smollm2")``).
        cache: iclopt's result cache, or ``None``.
        task_max_tokens: Generation cap of task calls unless DSPy passes ``max_tokens``.
        meta_max_tokens: Cap of meta calls (proposals, reflections); also the ceiling of any
            ``max_tokens`` DSPy asks for.
        seed: Mixed into the seed of every sampled answer (temperature > 0), so that runs
            with different seeds sample differently and each run is reproducible.
        max_batch: Most concurrent calls answered by one ``generate``.
    """

    def __init__(
        self,
        llm: LLM,
        *,
        cache: ResultCache | None = None,
        task_max_tokens: int = 48,
        meta_max_tokens: int = 256,
        seed: int = 0,
        max_batch: int = 32,
    ) -> None:
        super().__init__(
            model=f"iclopt/{llm.identity}", model_type="chat", temperature=0.0, cache=False
        )
        self.llm = llm
        self.store = cache
        self.task_max_tokens = task_max_tokens
        self.meta_max_tokens = meta_max_tokens
        self.seed = seed
        self.max_batch = max_batch
        self.ledger = Ledger()
        # shared by the copies DSPy makes (rollouts): the phase, generation seconds and
        # the one batching thread that answers them all
        self.state: dict[str, Any] = {"phase": "compile", "seconds": 0.0, "worker": None}
        self._lock = threading.Lock()
        self._queue: queue.Queue[_Request | None] = queue.Queue()

    # ------------------------------------------------------------------ text
    def render(self, prompt: str | None, messages: list[dict[str, Any]] | None) -> str:
        """The exact text the model continues: raw for completion-adapter task calls."""
        if messages is None:
            messages = [{"role": "user", "content": prompt or ""}]
        if _RAW_TEXT.get():
            return "".join(str(m["content"]) for m in messages)
        flat = [{"role": m["role"], "content": _content_text(m["content"])} for m in messages]
        return self.llm.apply_chat_template(flat)

    def forward(
        self, prompt: str | None = None, messages: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> dict[str, Any]:
        merged = {**self.kwargs, **{k: v for k, v in kwargs.items() if v is not None}}
        task = _TASK_CALL.get()
        text = self.render(prompt, messages)
        cap = self.task_max_tokens if task else self.meta_max_tokens
        asked = merged.get("max_tokens") or merged.get("max_completion_tokens")
        max_tokens = min(int(asked), self.meta_max_tokens) if asked else cap
        stop = merged.get("stop") or ()
        stop = (stop,) if isinstance(stop, str) else tuple(stop)
        temperature = float(merged.get("temperature") or 0.0)
        n = int(merged.get("n") or 1)
        rollout = merged.get("rollout_id")
        reqs = [
            _Request(
                text,
                max_tokens,
                stop,
                temperature,
                self._sample_seed(text, temperature, rollout, i) if temperature > 0 else 0,
            )
            for i in range(n)
        ]
        texts = self._answer(reqs, kind="task" if task else "meta")
        tokens = self.llm.count_tokens([text])[0]
        return {
            "id": "iclopt",
            "object": "chat.completion",
            "model": self.model,
            "choices": [
                {
                    "index": i,
                    "finish_reason": "stop",
                    "message": {"role": "assistant", "content": t},
                }
                for i, t in enumerate(texts)
            ],
            "usage": {
                "prompt_tokens": tokens * n,
                "completion_tokens": sum(self.llm.count_tokens(texts)),
                "total_tokens": tokens * n,
            },
        }

    def _sample_seed(self, text: str, temperature: float, rollout: Any, i: int) -> int:
        blob = json.dumps([self.seed, text, temperature, rollout, i], ensure_ascii=False)
        return int(hashlib.sha256(blob.encode()).hexdigest()[:15], 16)

    # ------------------------------------------------------------------ calls
    def _key(self, r: _Request) -> str:
        return ResultCache.key(
            "dspy-generate",
            self.llm.identity,
            r.text,
            r.max_tokens,
            list(r.stop),
            r.temperature,
            r.seed if r.temperature > 0 else None,
        )

    def _answer(self, reqs: list[_Request], kind: str) -> list[str]:
        keys = [self._key(r) for r in reqs]
        found = self.store.get_many(keys) if self.store is not None else {}
        for r, k in zip(reqs, keys):
            if k in found:
                r.future.set_result(found[k])
            else:
                self._submit(r)
        texts = [r.future.result() for r in reqs]
        tokens = self.llm.count_tokens([reqs[0].text])[0]
        hits = sum(k in found for k in keys)
        with self._lock:
            self.ledger.add(
                self.state["phase"], kind, calls=len(reqs), tokens=tokens * len(reqs), hits=hits
            )
        if self.store is not None:
            new = {k: t for k, t in zip(keys, texts) if k not in found}
            if new:
                self.store.put_many(new)
        return texts

    def _submit(self, r: _Request) -> None:
        with self._lock:
            worker = self.state["worker"]
            if worker is None or not worker.is_alive():
                worker = threading.Thread(target=self._serve, daemon=True)
                self.state["worker"] = worker
                worker.start()
        self._queue.put(r)

    def _serve(self) -> None:
        """Answer queued requests, all that are waiting at once (grouped by settings)."""
        while True:
            first = self._queue.get()
            if first is None:  # close()
                return
            time.sleep(0.005)  # let concurrent callers arrive
            batch, closing = [first], False
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    closing = True
                    break
                batch.append(item)
            groups: dict[tuple[Any, ...], list[_Request]] = {}
            for r in batch:
                groups.setdefault((r.max_tokens, r.stop, r.temperature), []).append(r)
            for (max_tokens, stop, temperature), rows in groups.items():
                t0 = time.perf_counter()
                try:
                    out = self.llm.generate(
                        [r.text for r in rows],
                        max_new_tokens=max_tokens,
                        stop=stop,
                        temperature=temperature,
                        seed=[r.seed for r in rows] if temperature > 0 else None,
                    )
                except Exception as exc:  # handed to the caller, never swallowed
                    for r in rows:
                        r.future.set_exception(exc)
                    continue
                finally:
                    self.state["seconds"] += time.perf_counter() - t0
                for r, t in zip(rows, out):
                    r.future.set_result(t)
            if closing:
                return

    def close(self) -> None:
        """Stop the batching thread (a later call starts a new one)."""
        with self._lock:
            worker, self.state["worker"] = self.state["worker"], None
        if worker is not None and worker.is_alive():
            self._queue.put(None)
            worker.join()

    @contextmanager
    def in_phase(self, phase: str) -> Iterator[None]:
        """Charge calls made inside to ``phase``."""
        before, self.state["phase"] = self.state["phase"], phase
        try:
            yield
        finally:
            self.state["phase"] = before


def _content_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return "".join(p.get("text", "") for p in content if isinstance(p, dict))
    return str(content)


# ---------------------------------------------------------------------- adapters
class ShippedChatAdapter(ChatAdapter):
    """DSPy's ``ChatAdapter`` as shipped; it only marks task calls for the LM's ledger."""

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: Any, inputs: Any):
        token = _TASK_CALL.set(is_task_signature(signature))
        try:
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        finally:
            _TASK_CALL.reset(token)


class CompletionAdapter(ChatAdapter):
    """Task calls rendered as iclopt renders them; everything else as ``ChatAdapter``.

    The task prompt is ``Template().render_text(instruction, demos, query)``: the
    signature's instructions (none while they are DSPy's generic default), each demo as
    "Input: ...\\nOutput: ...", then the query; generation stops at the first line
    break, and the answer is that line, stripped (as iclopt's evaluator does).

    Args:
        max_new_tokens: Generation cap of a task call (iclopt's evaluator's default).
        template: The iclopt template.
    """

    def __init__(self, max_new_tokens: int, template: Template | None = None) -> None:
        super().__init__()
        self.max_new_tokens = max_new_tokens
        self.template = template or Template()

    def __call__(self, lm: Any, lm_kwargs: dict[str, Any], signature: Any, demos: Any, inputs: Any):
        if not is_task_signature(signature):
            return super().__call__(lm, lm_kwargs, signature, demos, inputs)
        t1, t2 = _TASK_CALL.set(True), _RAW_TEXT.set(True)
        try:
            kwargs = {**lm_kwargs, "max_tokens": self.max_new_tokens, "stop": ["\n"]}
            messages = self.format(signature, demos, inputs)
            with adapter_message_call(lm, messages):
                outputs = lm(messages=messages, **kwargs)
            # every answer parses, an empty one too (iclopt scores it; DSPy would raise)
            texts = [o.get("text") if isinstance(o, dict) else o for o in outputs]
            return [self.parse(signature, t or "") for t in texts]
        finally:
            _RAW_TEXT.reset(t2)
            _TASK_CALL.reset(t1)

    def format(self, signature: Any, demos: list[dict[str, Any]], inputs: dict[str, Any]):
        if not is_task_signature(signature):
            return super().format(signature, demos, inputs)
        return [{"role": "user", "content": self.render(signature, demos, inputs["input"])}]

    def render(self, signature: Any, demos: Sequence[Any], query: str) -> str:
        """The completion text of one task call."""
        instruction = signature.instructions.strip()
        if instruction == DEFAULT_INSTRUCTIONS.strip():
            instruction = None
        shown = [
            Example(str(d["input"]), str(d["output"]))
            for d in demos
            if d.get("input") is not None and d.get("output") is not None
        ]
        return self.template.render_text(instruction, shown, str(query))

    def parse(self, signature: Any, completion: str) -> dict[str, Any]:
        if not is_task_signature(signature):
            return super().parse(signature, completion)
        return {"output": completion.split("\n")[0].strip()}


# ---------------------------------------------------------------------- data, metrics
def to_dspy(examples: Sequence[Example]) -> list[dspy.Example]:
    """iclopt examples as DSPy examples (``input`` -> ``output``; all answers kept aside)."""
    return [
        dspy.Example(input=e.input, output=e.target, answers=list(e.answers), id=e.id).with_inputs(
            "input"
        )
        for e in examples
    ]


def output_of(pred: Any) -> str:
    """The ``output`` field of a DSPy prediction (or dict); ``""`` when it is missing."""
    value = pred.get("output") if isinstance(pred, dict) else getattr(pred, "output", None)
    return "" if value is None else str(value)


def dspy_metric(metric: Callable[[str, Sequence[str]], float]) -> Callable[..., Any]:
    """iclopt's metric in DSPy's form; while bootstrapping (a trace), only a full score passes."""

    def score(example: Any, pred: Any, trace: Any = None) -> float | bool:
        s = float(metric(output_of(pred), example.answers))
        return s >= 1.0 if trace is not None else s

    return score


def gepa_metric(metric: Callable[[str, Sequence[str]], float]) -> Callable[..., Any]:
    """iclopt's metric with GEPA's textual feedback: the expected answer."""

    def score(
        gold: Any, pred: Any, trace: Any = None, pred_name: Any = None, pred_trace: Any = None
    ) -> Any:
        got = output_of(pred)
        s = float(metric(got, gold.answers))
        if s >= 1.0:
            feedback = f"Correct: the answer is {gold.output!r}."
        else:
            feedback = f"Wrong: the answer was {got!r}; the expected answer is {gold.output!r}."
        return dspy.Prediction(score=s, feedback=feedback)

    return score


def embedder_for_dspy(embedder: Any) -> dspy.Embedder:
    """iclopt's sentence encoder (as the ``similarity`` selector uses) as a ``dspy.Embedder``."""
    return dspy.Embedder(lambda texts: embedder(list(texts)), caching=False)


# ---------------------------------------------------------------------- optimizers
OPTIMIZERS = ("labeled", "bootstrap-rs", "knn", "mipro", "simba", "gepa")


@dataclass
class Setting:
    """A DSPy optimizer built for a budget, and how to compile it."""

    optimizer: Any
    compile: Callable[[Any], Any]
    params: dict[str, Any]


def build_optimizer(
    name: str,
    *,
    k: int,
    calls: int,
    seed: int,
    trainset: list[dspy.Example],
    valset: list[dspy.Example],
    metric: Callable[[str, Sequence[str]], float],
    lm: IcloptLM,
    embedder: Any,
    threads: int,
) -> Setting:
    """One DSPy optimizer at (about) ``calls`` LLM calls on train/val data.

    LabeledFewShot and KNNFewShot make no calls while compiling (KNNFewShot bootstraps
    at inference, counted apart). BootstrapFewShotWithRandomSearch and MIPROv2 get as
    many full validation evaluations as ``calls`` pays for, less their bootstrapping;
    SIMBA runs its smallest sensible schedule; GEPA is capped by ``max_metric_calls``.
    None of them caps its proposal/reflection calls: those are counted, not limited.
    """
    m = dspy_metric(metric)
    v = len(valset)
    evals = max(1, calls // max(v, 1))
    if name == "labeled":
        opt = dspy.LabeledFewShot(k=k)
        return Setting(opt, lambda p: opt.compile(p, trainset=trainset), {"k": k})
    if name == "knn":
        params = {"k": k, "max_bootstrapped_demos": k, "max_labeled_demos": k}
        opt = dspy.KNNFewShot(
            k=k,
            trainset=trainset,
            vectorizer=embedder_for_dspy(embedder),
            metric=m,
            max_bootstrapped_demos=k,
            max_labeled_demos=k,
        )
        return Setting(opt, lambda p: opt.compile(p), params)
    if name == "bootstrap-rs":
        # candidates -3 (zero-shot), -2 (labeled), -1 (bootstrapped) and 0..n-1 (shuffled)
        n = max(1, evals - 3)
        params = {
            "max_bootstrapped_demos": k,
            "max_labeled_demos": k,
            "num_candidate_programs": n,
        }
        opt = dspy.BootstrapFewShotWithRandomSearch(metric=m, num_threads=threads, **params)
        return Setting(opt, lambda p: opt.compile(p, trainset=trainset, valset=valset), params)
    if name == "mipro":
        trials = max(1, evals - 1)  # the default program is evaluated first
        params = {
            "auto": None,
            "num_candidates": 2,
            "max_bootstrapped_demos": k,
            "max_labeled_demos": k,
            "num_trials": trials,
            "minibatch": v > 35,
        }
        opt = dspy.MIPROv2(
            metric=m,
            prompt_model=lm,
            task_model=lm,
            auto=None,
            num_candidates=2,
            max_bootstrapped_demos=k,
            max_labeled_demos=k,
            num_threads=threads,
            seed=seed,
            verbose=False,
            track_stats=False,
        )
        return Setting(
            opt,
            lambda p: opt.compile(
                p,
                trainset=trainset,
                valset=valset,
                num_trials=trials,
                minibatch=v > 35,
                seed=seed,
            ),
            params,
        )
    if name == "simba":
        # per step: bsize trajectories for each of num_candidates, then their evaluation;
        # at the end every candidate is scored on the full trainset
        bsize = max(2, min(len(trainset), calls // 8))
        params = {"bsize": bsize, "num_candidates": 2, "max_steps": 1, "max_demos": k}
        opt = dspy.SIMBA(
            metric=lambda ex, pred: float(m(ex, pred)),
            prompt_model=lm,
            num_threads=threads,
            **params,
        )
        return Setting(opt, lambda p: opt.compile(p, trainset=trainset, seed=seed), params)
    if name == "gepa":
        params = {"max_metric_calls": calls, "reflection_minibatch_size": 3, "use_merge": True}
        opt = dspy.GEPA(
            metric=gepa_metric(metric),
            reflection_lm=lm,
            num_threads=threads,
            seed=seed,
            track_stats=False,
            **params,
        )
        return Setting(opt, lambda p: opt.compile(p, trainset=trainset, valset=valset), params)
    raise ValueError(f"unknown DSPy optimizer {name!r}; valid: {', '.join(OPTIMIZERS)}")


def describe(program: Any) -> dict[str, Any]:
    """The compiled program's instruction and demos (as saved in the result JSON)."""
    predictor = program.predictors()[0]
    return {
        "instructions": predictor.signature.instructions,
        "demos": [
            {
                "input": d.get("input"),
                "output": d.get("output"),
                "augmented": bool(d.get("augmented")),
            }
            for d in predictor.demos
        ],
    }
