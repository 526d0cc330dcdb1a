"""Candidate instructions: de-duplication and APE-style generation by the LLM itself.

APE (Zhou et al., "Large Language Models Are Human-Level Prompt Engineers", ICLR 2023)
shows the model a few input/output pairs and asks it to complete "The instruction was
to ..."; every completion is a candidate instruction. Here the proposals are one batched,
seeded sampling call, answered from the result cache when possible and charged to the
search budget otherwise.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

from iclopt.data import Task
from iclopt.errors import InputDataError
from iclopt.evaluation import Budget, Cost, ResultCache
from iclopt.llms.base import LLM

__all__ = ["APE_TEMPLATE", "dedupe_instructions", "generate_instructions"]

#: APE's forward-generation template (Zhou et al., 2023).
APE_TEMPLATE = (
    "I gave a friend an instruction and {n} inputs. The friend read the instruction and "
    "wrote an output for every one of the inputs. Here are the input-output pairs:\n\n"
    "{demos}\n\nThe instruction was to"
)


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().strip(".!?:;,").strip().lower()


def dedupe_instructions(instructions: Sequence[str | None]) -> list[str | None]:
    """Drop blanks and repeats (case, whitespace and end punctuation ignored); keep order.

    ``None`` ("no instruction") is kept once if present.

    Example:
        >>> dedupe_instructions(["Classify it.", "classify  it", None, " ", None])
        ['Classify it.', None]
    """
    out: list[str | None] = []
    seen: set[str | None] = set()
    for ins in instructions:
        if ins is not None:
            ins = re.sub(r"\s+", " ", ins).strip()
            if not _norm(ins):
                continue
        key = None if ins is None else _norm(ins)
        if key in seen:
            continue
        seen.add(key)
        out.append(ins)
    return out


def _clean(text: str) -> str:
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    line = line.strip(" \"'")
    if not line:
        return ""
    line = line[0].upper() + line[1:]
    return line if line.endswith((".", "!", "?")) else line + "."


def generate_instructions(
    task: Task,
    llm: LLM,
    n: int,
    *,
    seed: int | None,
    n_demos: int = 5,
    temperature: float = 0.7,
    max_new_tokens: int = 32,
    budget: Budget | None = None,
    cache: ResultCache | None = None,
) -> tuple[list[str], Cost]:
    """Propose up to ``n`` distinct instructions for ``task`` from random demonstrations.

    Each proposal shows ``n_demos`` random pool examples in APE's template and samples a
    completion of "The instruction was to" (one batched call; sampling seeded by
    ``seed``). Completions are cut to their first line, capitalized and de-duplicated, so
    fewer than ``n`` may come back.

    Args:
        task: The task (its pool supplies the demonstrations).
        llm: The model that proposes instructions.
        n: Number of proposals.
        seed: Seed of the demonstration draws and of the sampling; ``None`` also turns
            off caching of the samples.
        n_demos: Demonstrations per proposal.
        temperature: Sampling temperature.
        max_new_tokens: Length cap of a proposal.
        budget: Charged for the LLM calls (checked before the call).
        cache: Result cache; proposals are cached per (model, meta-prompt, index, seed).

    Returns:
        The distinct instructions, and what generating them cost.

    Raises:
        InputDataError: Bad arguments, or nothing usable came back.
        BudgetExhausted: The budget cannot pay for the calls.

    Example:
        >>> from iclopt.datasets import get_task
        >>> from iclopt.testing import FakeLLM
        >>> ins, cost = generate_instructions(get_task("sentiment"), FakeLLM(), 3, seed=0)
        >>> cost.llm_calls
        3
    """
    if not isinstance(n, int) or isinstance(n, bool) or n < 1:
        raise InputDataError(f"the number of instructions to generate must be >= 1, got {n!r}")
    rng = np.random.default_rng(seed)
    k = min(n_demos, len(task.pool))
    metas = []
    for _ in range(n):
        ids = rng.choice(len(task.pool), size=k, replace=False)
        demos = "\n\n".join(
            f"Input: {task.pool[int(i)].input}\nOutput: {task.pool[int(i)].target}" for i in ids
        )
        metas.append(APE_TEMPLATE.format(n=k, demos=demos))
    settings = {"temperature": temperature, "max_new_tokens": max_new_tokens, "seed": seed}
    keys = [ResultCache.key("ape", llm.identity, settings, m, i) for i, m in enumerate(metas)]
    use_cache = cache is not None and seed is not None
    found = cache.get_many(keys) if use_cache and cache is not None else {}
    miss = [i for i, key in enumerate(keys) if key not in found]
    cost = Cost(cache_hits=len(metas) - len(miss))
    if miss:
        prompts = [metas[i] for i in miss]
        tokens = sum(llm.count_tokens(prompts))
        if budget is not None:
            budget.check(llm_calls=len(prompts), prompt_tokens=tokens)
        seeds = None if seed is None else [int(seed) * 100_003 + i for i in miss]
        outs = llm.generate(
            prompts,
            max_new_tokens=max_new_tokens,
            stop=("\n",),
            temperature=temperature,
            seed=seeds,
        )
        cost.llm_calls += len(prompts)
        cost.prompt_tokens += tokens
        new = {keys[i]: o for i, o in zip(miss, outs)}
        found.update(new)
        if use_cache and cache is not None:
            cache.put_many(new)
    if budget is not None:
        budget.charge(cost)
    cleaned = [_clean(str(found[key])) for key in keys]
    out = [c for c in dedupe_instructions([c for c in cleaned if c]) if c is not None]
    if not out:
        raise InputDataError(
            f"instruction generation gave no usable instruction ({n} proposals were empty "
            "or repeats after de-duplication)"
        )
    return out, cost
