"""Could a prior learned on other tasks tell a search which prompts to try? An offline check.

One run of ``race`` sees too few prompts to learn what makes a prompt good beyond its
demonstrations (docs/benchmarks.md, "shared prompt features"). A prior fitted on other
tasks and shipped with iclopt would not need to. This script asks whether such a prior
exists among the cheap, task-agnostic descriptors of a prompt's demonstrations:

- coverage of the validation queries (the mean over queries of the highest cosine
  similarity to a demonstration, the idea behind KATE, Liu et al., DeeLIO 2022);
- coverage of the pool's inputs (the task's input distribution, not the 20 queries);
- diversity (one minus the mean cosine similarity between the demonstrations);
- the mean log length of the demonstrations' inputs and of their outputs.

Each is standardized per task over 500 random prompts of its pool (all-MiniLM-L6-v2).
Two tables, from committed cells only (no LLM call):

1. **Random prompts** (best-of-n's 60 per run, 5 runs per task): the correlation of a
   ridge fit on the other 7 tasks with the validation score, within each run (what a
   prior could do for a search), and the validation score of the prompt it ranks first.
2. **Prompts with a test score** (every method's answer and every finalist of
   ``experiments/search_finalists.py``): each descriptor's correlation with the
   in-distribution test score, the score a prior must predict, and that of the prior
   fitted on the other tasks. These prompts were chosen for high validation scores, so
   the correlations are within a narrow, selected range.

    python experiments/search_priors.py
"""

from __future__ import annotations

import glob
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

import search as S  # the benchmark's tasks, splits and cells

NAMES = ["val coverage", "pool coverage", "diversity", "input length", "output length"]


class Descriptors:
    """The standardized descriptors of a task's prompts (see the module docstring)."""

    def __init__(self, task, embedder, *, k: int = 5, seed: int = 0) -> None:
        def unit(x):
            x = np.asarray(x, dtype=np.float64)
            return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)

        pool = task.pool
        demo = unit(embedder([f"{ex.input} {ex.output}".strip() for ex in pool]))
        self.val_sim = unit(embedder([q.input for q in task.val])) @ demo.T
        self.pool_sim = unit(embedder([ex.input for ex in pool])) @ demo.T
        self.gram = demo @ demo.T
        self.in_len = np.log1p([len(ex.input) for ex in pool])
        self.out_len = np.log1p([len(str(ex.output)) for ex in pool])
        rng = np.random.default_rng(seed)
        raw = np.array([self._raw(rng.choice(len(pool), k, replace=False)) for _ in range(500)])
        self.mean, self.scale = raw.mean(axis=0), np.maximum(raw.std(axis=0), 1e-9)

    def _raw(self, d: np.ndarray) -> np.ndarray:
        own = np.isin(np.arange(self.pool_sim.shape[0]), d)  # a demo covers itself
        g = self.gram[np.ix_(d, d)]
        div = 1.0 - (g.sum() - np.trace(g)) / max(1, len(d) * (len(d) - 1))
        return np.array(
            [
                self.val_sim[:, d].max(axis=1).mean(),
                self.pool_sim[~own][:, d].max(axis=1).mean(),
                div,
                self.in_len[d].mean(),
                self.out_len[d].mean(),
            ]
        )

    def __call__(self, demos) -> np.ndarray:
        return (self._raw(np.asarray(demos, dtype=np.int64)) - self.mean) / self.scale


def _cells(spec: str, pattern: str) -> list[dict]:
    return [json.loads(Path(p).read_text()) for p in sorted(glob.glob(pattern.format(spec=spec)))]


def main() -> None:
    from iclopt.embedders.sentence_transformers import default_embedder

    embedder = default_embedder()
    random_prompts: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    tested: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for spec in S.TASKS:
        task, _ = S.load(spec)
        f = Descriptors(task, embedder)
        x, y, run = [], [], []
        for cell in _cells(spec, str(S.OUT / "{spec}__best-of-n__s*.json")):
            scores = np.array([e["score"] for e in cell["trace"]])
            z = (scores - scores.mean()) / max(scores.std(), 1e-9)
            x += [f(e["demos"]) for e in cell["trace"]]
            y += list(z)
            run += [cell["seed"]] * len(z)
        random_prompts[spec] = (np.array(x), np.array(y), np.array(run))
        seen: dict[tuple[int, ...], float] = {}
        for cell in _cells(spec, str(S.ROOT / "experiments/results/search*/{spec}__*.json")):
            if isinstance(cell.get("final"), dict) and cell.get("indist") is not None:
                seen[tuple(cell["final"]["demos"])] = float(cell["indist"])
            for fin in cell.get("finalists") or []:
                seen[tuple(fin["demos"])] = float(fin["indist"])
        tested[spec] = (np.array([f(d) for d in seen]), np.array(list(seen.values())))

    def ridge(x: np.ndarray, y: np.ndarray, lam: float = 10.0) -> np.ndarray:
        return np.linalg.solve(x.T @ x + lam * np.eye(x.shape[1]), x.T @ y)

    def corr(a: np.ndarray, b: np.ndarray) -> float:
        return float(np.corrcoef(a, b)[0, 1]) if a.std() > 0 and b.std() > 0 else float("nan")

    star = {spec: "*" if spec in S.DEV_TASKS else "" for spec in S.TASKS}
    prior = {}  # the prior of each task: fitted on the other 7 tasks' random prompts
    for spec in S.TASKS:
        others = [s for s in S.TASKS if s != spec]
        prior[spec] = ridge(
            np.vstack([random_prompts[s][0] for s in others]),
            np.concatenate([random_prompts[s][1] for s in others]),
        )
    print("Random prompts (best-of-n's, 5 runs x 60 per task): a ridge fit on the other 7 tasks")
    print("| task | within-run corr. with val score | val z of its top-ranked prompt | weights |")
    print("|---|---|---|---|")
    for spec in S.TASKS:
        w = prior[spec]
        x, y, run = random_prompts[spec]
        cs = [corr(x[run == r] @ w, y[run == r]) for r in np.unique(run)]
        top = [y[run == r][np.argmax(x[run == r] @ w)] for r in np.unique(run)]
        weights = ", ".join(f"{n} {v:+.2f}" for n, v in zip(NAMES, w))
        print(f"| {spec}{star[spec]} | {np.mean(cs):+.2f} | {np.mean(top):+.2f} | {weights} |")
    print()
    print("Prompts with an in-distribution test score (answers and finalists): correlation")
    print("| task | prompts | the prior | " + " | ".join(NAMES) + " |")
    print("|---|---|---|" + "---|" * len(NAMES))
    for spec in S.TASKS:
        x, y = tested[spec]
        cs = " | ".join(f"{corr(x[:, j], y):+.2f}" for j in range(len(NAMES)))
        print(f"| {spec}{star[spec]} | {len(y)} | {corr(x @ prior[spec], y):+.2f} | {cs} |")


if __name__ == "__main__":
    main()
