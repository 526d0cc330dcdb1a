"""Tree-structured Parzen estimator over k categorical slots, via Optuna (MIPROv2's search)."""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from iclopt.bandits.base import Trial, register_optimizer
from iclopt.bandits.model_based import ModelBasedOptimizer
from iclopt.embedders.base import Embedder
from iclopt.errors import MissingDependencyError
from iclopt.prompts import Prompt

__all__ = ["TPEBandit", "repair"]


def repair(ids: Sequence[int], pool_size: int) -> tuple[int, ...]:
    """Make slot ids distinct: a repeated id moves to the next unused id (cyclically).

    Earlier slots keep their ids; the map is deterministic, so TPE learns a proper
    function of its parameters.

    Example:
        >>> repair([3, 3, 4, 3], 6)
        (3, 4, 5, 0)
    """
    used: set[int] = set()
    out = []
    for i in ids:
        j = int(i)
        while j in used:
            j = (j + 1) % pool_size
        used.add(j)
        out.append(j)
    return tuple(out)


@contextlib.contextmanager
def _quiet_optuna() -> Iterator[None]:
    log = logging.getLogger("optuna")
    level = log.level
    log.setLevel(logging.WARNING)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # ExperimentalWarning for multivariate
            yield
    finally:
        log.setLevel(level)


@register_optimizer("tpe")
class TPEBandit(ModelBasedOptimizer):
    """Optuna multivariate TPE over k categorical slots (MIPROv2-style).

    Bergstra et al., NeurIPS 2011; Falkner et al., ICML 2018 (multivariate TPE). Optuna's
    ``TPESampler(multivariate=True)`` with ``Study.ask`` / ``Study.tell``.

    The search space is the shape DSPy's MIPROv2 uses: one categorical parameter per slot
    (``slot_0 .. slot_{k-1}``, each over all pool ids) plus the instruction index when
    several instructions are searched. The shared initial design is enqueued as the first
    trials, so TPE starts from the same prompts as the other model-based methods.

    Repeated ids: TPE samples slots independently of the "distinct" constraint, so a
    sampled tuple may repeat an id. It is repaired deterministically by :func:`repair`
    (a repeat moves to the next unused id), and the reward of the repaired prompt is told
    to the sampled trial: TPE models the composed map, which is a proper function of its
    parameters. A (repaired) prompt already evaluated is told its known score without a
    new evaluation and TPE is asked again (up to ``max_retries`` times); after that a
    random unseen prompt is enqueued (source ``random``).

    No surrogate mean or uncertainty exists in TPE; the trace records the source
    (``tpe``), whether the tuple was repaired and how many repeats were skipped.

    Args:
        k: Demonstrations per prompt.
        seed: Seed of the design and of the TPE sampler.
        instructions: Candidate instructions (searched jointly).
        n_init: Initial design size; ``None`` scales 40/165 to the budget.
        embedder: Unused (kept for a uniform signature).
        max_retries: Repeats skipped before falling back to a random unseen prompt.
        n_ei_candidates: Optuna's ``n_ei_candidates``.

    Example:
        >>> from iclopt.datasets import get_task
        >>> opt = TPEBandit(k=3, seed=0, n_init=2)
        >>> opt.setup(get_task("sentiment"), budget=4)
        >>> for _ in range(3):
        ...     t = opt.ask(); opt.tell(t, float(t.prompt.demos[0] % 5))
        >>> t.info["source"] in ("tpe", "random")
        True
    """

    uses_embedder = False
    requires = (("optuna", "'iclopt[opt]'"),)

    def __init__(
        self,
        *,
        k: int = 5,
        seed: int | None = None,
        instructions: Sequence[str | None] = (None,),
        n_init: int | None = None,
        embedder: Embedder | str | None = None,
        max_retries: int = 20,
        n_ei_candidates: int = 24,
    ) -> None:
        super().__init__(
            k=k, seed=seed, instructions=instructions, n_init=n_init, embedder=embedder
        )
        self.max_retries = max_retries
        self.n_ei_candidates = n_ei_candidates

    def setup(
        self, task: Any, *, budget: int | None = None, query_budget: int | None = None
    ) -> None:
        """Validate and create the Optuna study with the initial design enqueued."""
        try:
            import optuna
        except ImportError:
            raise MissingDependencyError(
                "the tpe method needs Optuna: pip install 'iclopt[opt]'"
            ) from None
        super().setup(task, budget=budget, query_budget=query_budget)
        n = len(task.pool)
        self.distributions_: dict[str, Any] = {
            f"slot_{j}": optuna.distributions.CategoricalDistribution(list(range(n)))
            for j in range(int(self.k))
        }
        if len(self.instructions) > 1:
            self.distributions_["instruction"] = optuna.distributions.CategoricalDistribution(
                list(range(len(self.instructions)))
            )
        with _quiet_optuna():
            sampler = optuna.samplers.TPESampler(
                multivariate=True,
                seed=self.seed,
                n_startup_trials=0,  # the enqueued shared design is the startup phase
                n_ei_candidates=int(self.n_ei_candidates),
            )
            self.study_ = optuna.create_study(direction="maximize", sampler=sampler)
        for p in self.design_:
            self.study_.enqueue_trial(self._params(p))
        self.pending_: dict[Prompt, list[Any]] = {}

    def _params(self, prompt: Prompt) -> dict[str, int]:
        params = {f"slot_{j}": int(d) for j, d in enumerate(prompt.demos)}
        if len(self.instructions) > 1:
            params["instruction"] = list(self.instructions).index(prompt.instruction)
        return params

    def _ask_trial(self) -> tuple[Any, Prompt, bool]:
        with _quiet_optuna():
            t = self.study_.ask(self.distributions_)
        ids = [int(t.params[f"slot_{j}"]) for j in range(int(self.k))]
        demos = repair(ids, len(self.task_.pool))
        ins = (
            self.instructions[int(t.params["instruction"])]
            if "instruction" in t.params
            else (self.instructions[0])
        )
        return t, Prompt(ins, demos), demos != tuple(ids)

    def ask(self) -> Trial:
        """The next design prompt, else TPE's next unseen prompt (see the class docs)."""
        self._check_setup()
        for p in self.design_:
            if p not in self.asked_:
                t, prompt, _ = self._ask_trial()  # the enqueued trial for p
                self.pending_.setdefault(prompt, []).append(t)
                return self._asked(Trial(prompt, info={"source": "initial"}))
        return super().ask()

    def _ask_model(self) -> Trial:
        skipped = 0
        for _ in range(int(self.max_retries) + 1):
            t, prompt, repaired = self._ask_trial()
            if prompt not in self.asked_:
                self.pending_.setdefault(prompt, []).append(t)
                return Trial(
                    prompt, info={"source": "tpe", "repaired": repaired, "skipped": skipped}
                )
            with _quiet_optuna():  # a repeat: tell the known score, ask again
                known = self.scores_.get(prompt)
                if known is None:
                    self.study_.tell(t, state=_fail_state())
                else:
                    self.study_.tell(t, known)
            skipped += 1
        prompt = self._random_unseen()
        self.study_.enqueue_trial(self._params(prompt))
        t, got, _ = self._ask_trial()
        self.pending_.setdefault(got, []).append(t)
        return Trial(got, info={"source": "random", "skipped": skipped})

    def observe(self, prompt: Prompt, reward: float) -> None:
        """Record the score and tell it to the pending Optuna trial(s) of ``prompt``.

        A prompt this instance never asked for (another worker's, in a shared study) is
        added to the in-memory study as a finished trial, so TPE learns from it too.
        """
        import optuna

        super().observe(prompt, reward)
        with _quiet_optuna():
            pending = self.pending_.pop(prompt, [])
            for t in pending:
                self.study_.tell(t, float(reward))
            if not pending:
                self.study_.add_trial(
                    optuna.trial.create_trial(
                        params=self._params(prompt),
                        distributions={
                            name: self.distributions_[name] for name in self._params(prompt)
                        },
                        value=float(reward),
                    )
                )


def _fail_state() -> Any:
    import optuna

    return optuna.trial.TrialState.FAIL
