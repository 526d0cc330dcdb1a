"""Local Hugging Face causal LMs, with batched greedy decoding and prefix-KV reuse.

Prefix-KV reuse: the prompts of one evaluation share the instruction and the
demonstrations, so their token sequences share a long prefix. :class:`HFModel` finds
that prefix at the token level, runs it once, and continues every query from a copy of
its key/value cache. Queries of different lengths are padded *between* the prefix and
the query (masked, with explicit position ids), so every real token sees exactly the
tokens and positions it would see in a plain left-padded batch of the full prompts: the
results are the same up to floating-point rounding.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from iclopt.errors import InputDataError, LLMError, MissingDependencyError
from iclopt.llms.base import WhiteBoxLLM, cut_at_stop
from iclopt.llms.batching import common_prefix_len, padded_batches, plan_prefix_groups
from iclopt.llms.batching import common_prefix_len as _common_prefix_len  # noqa: F401
from iclopt.llms.batching import prefix_groups as _prefix_groups  # noqa: F401
from iclopt.llms.files import file_digest, folder_digest  # noqa: F401
from iclopt.paths import cache_dir  # noqa: F401
from iclopt.prompts import Message

# file_digest, cache_dir, _prefix_groups, _common_prefix_len (and, lazily, SMOLLM2_GGUF and
# smollm2) lived here before this module was split by concern; importable from here still

__all__ = ["HFModel"]

logger = logging.getLogger(__name__)


class HFModel(WhiteBoxLLM):
    """A causal LM loaded with ``transformers`` (a local directory, a GGUF file or a hub id).

    Args:
        model: Model directory or hub id.
        gguf_file: GGUF file name inside ``model`` (loaded and de-quantized to float32).
        name: Name recorded in artifacts and cache keys; defaults to ``model``.
        revision: What identifies the weights (e.g. a content hash); ``None`` hashes the
            local model files (once per file version, cached) or, for a hub id, uses the
            id alone.
        batch_size: Rows per forward pass.
        prefix_cache: Reuse the key/value cache of a prefix shared by the prompts of one
            call (see the module docstring). Same results, much less compute.
        min_prefix_tokens: Shortest shared prefix worth caching.
        batch_overhead_tokens: Fixed cost of one more forward pass, in tokens, used to
            decide how to split rows of different lengths into padded batches.
        dtype: Torch dtype name for the weights.
        num_threads: Torch CPU threads; ``None`` keeps torch's default.

    Example:
        >>> llm = smollm2()  # doctest: +SKIP
        >>> llm.generate(["Input: 2+2\\nOutput:"], max_new_tokens=4, stop=["\\n"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        gguf_file: str | None = None,
        name: str | None = None,
        revision: str | None = None,
        batch_size: int = 32,
        prefix_cache: bool = True,
        min_prefix_tokens: int = 8,
        batch_overhead_tokens: int = 128,
        dtype: str = "float32",
        num_threads: int | None = None,
    ) -> None:
        self.model = model
        self.gguf_file = gguf_file
        self.name = name
        self.revision = revision
        self.batch_size = batch_size
        self.prefix_cache = prefix_cache
        self.min_prefix_tokens = min_prefix_tokens
        self.batch_overhead_tokens = batch_overhead_tokens
        self.dtype = dtype
        self.num_threads = num_threads
        self._model: Any = None
        self._tok: Any = None
        self._cache_kw = "past_key_values"  # set from the model's forward in load()
        #: Tokens fed to the model (pads included) and real tokens, since creation.
        self.tokens_fed = 0
        self.forward_calls = 0

    # ------------------------------------------------------------------ loading
    @property
    def identity(self) -> str:
        """Name (or path), a hash of the weights and tokenizer files, and the dtype.

        Two models given one name but different files never share cached answers.
        """
        if not hasattr(self, "_identity"):
            parts = [self.name] if self.name else [self.model]
            if self.gguf_file and not self.name:
                parts.append(self.gguf_file)
            revision = self.revision
            if revision is None and Path(self.model).is_dir():
                revision = folder_digest(Path(self.model), self.gguf_file)[:16]
            if revision is not None:
                parts.append(revision)
            self._identity = ":".join([*parts, self.dtype])
        return self._identity

    def load(self) -> HFModel:
        """Load weights and tokenizer now (otherwise done on first use)."""
        if self._model is not None:
            return self
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as exc:  # pragma: no cover - core dependencies
            raise MissingDependencyError(f"HFModel needs torch and transformers ({exc})") from None
        if self.num_threads is not None:
            torch.set_num_threads(self.num_threads)
        kw: dict[str, Any] = {"gguf_file": self.gguf_file} if self.gguf_file else {}
        local = Path(self.model).is_dir()
        try:
            self._tok = AutoTokenizer.from_pretrained(self.model, local_files_only=local, **kw)
            self._model = AutoModelForCausalLM.from_pretrained(
                self.model, dtype=getattr(torch, self.dtype), local_files_only=local, **kw
            )
        except (OSError, ValueError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise InputDataError(f"cannot load model {self.model!r}: {first}") from None
        self._model.eval()
        self._cache_kw = cache_argument(self._model)
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        return self

    def prepare(self) -> HFModel:
        """Load weights and tokenizer now (see :meth:`LLM.prepare`)."""
        return self.load()

    @property
    def tokenizer(self) -> Any:
        """The loaded tokenizer."""
        return self.load()._tok

    @property
    def hf_model(self) -> Any:
        """The loaded ``transformers`` model."""
        return self.load()._model

    # ------------------------------------------------------------------ tokens
    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids of each text, with the tokenizer's special tokens."""
        if not texts:
            return []  # the fast tokenizer fails on an empty batch
        return [list(ids) for ids in self.tokenizer(list(texts))["input_ids"]]

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Token count of each text."""
        return [len(ids) for ids in self.encode(texts)]

    def token_offsets(self, text: str) -> list[tuple[int, int]]:
        """Character span of each token of ``text``."""
        enc = self.tokenizer(text, return_offsets_mapping=True)
        return [tuple(span) for span in enc["offset_mapping"]]

    def apply_chat_template(self, messages: Sequence[Message]) -> str:
        """Render chat messages with the tokenizer's chat template."""
        tok = self.tokenizer
        if not getattr(tok, "chat_template", None):
            raise InputDataError(
                f"model {self.identity!r} has no chat template; use completion style"
            )
        return str(
            tok.apply_chat_template(list(messages), tokenize=False, add_generation_prompt=True)
        )

    # ------------------------------------------------------------------ forward
    def _prefix_pass(self, prefix: Sequence[int], *, output_hidden_states: bool = False) -> Any:
        """One forward pass over a shared prefix; its output holds the key/value cache."""
        import torch

        ids = torch.tensor([list(prefix)])
        out = self.hf_model(
            input_ids=ids,
            use_cache=True,
            logits_to_keep=1,
            output_hidden_states=output_hidden_states,
        )
        self.tokens_fed += len(prefix)
        self.forward_calls += 1
        return out

    def _prefix_cache(self, prefix: Sequence[int]) -> Any:
        return output_cache(self._prefix_pass(prefix))

    def _run_after(
        self,
        prefix_cache: Any,
        p: int,
        rows: Sequence[Sequence[int]],
        keep: int,
        *,
        output_hidden_states: bool = False,
    ) -> tuple[Any, Any, Any]:
        """Run ``rows`` (token suffixes) after a cached prefix of ``p`` tokens (0: none).

        Rows are left-padded inside the suffix region; pads are masked and real tokens
        get the positions they have in the full sequence, so each row's last real token
        is in the last column. The prefix cache is copied, never changed.

        Returns:
            ``(model output, attention mask B x (p+S), positions B x S)``.
        """
        import torch

        b, s = len(rows), max(len(r) for r in rows)
        ids = torch.full((b, s), int(self._tok.pad_token_id), dtype=torch.long)
        mask_s = torch.zeros((b, s), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, s - len(r) :] = torch.tensor(list(r), dtype=torch.long)
            mask_s[i, s - len(r) :] = 1
        mask = torch.cat([torch.ones((b, p), dtype=torch.long), mask_s], dim=1)
        pos = (p + mask_s.cumsum(dim=1) - 1).clamp(min=p)
        cache = None
        if p > 0:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(b)
        out = self.hf_model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            use_cache=True,
            logits_to_keep=keep,
            **{self._cache_kw: cache},
            output_hidden_states=output_hidden_states,
        )
        self.tokens_fed += b * s
        self.forward_calls += 1
        return out, mask, pos

    def _extend(
        self, prefix_cache: Any, p: int, rows: Sequence[Sequence[int]], keep: int
    ) -> tuple[Any, Any, Any, Any]:
        """:meth:`_run_after`, for decoding and scoring.

        Returns:
            ``(logits B x keep x V, cache, attention mask B x (p+S), last positions B)``.
        """
        out, mask, pos = self._run_after(prefix_cache, p, rows, keep)
        return out.logits, output_cache(out), mask, pos[:, -1]

    def _batches(
        self, p: int, rows: list[int], seqs: Sequence[Sequence[int]], passes: int = 1
    ) -> list[list[int]]:
        """Padded batches of ``rows`` after a ``p``-token prefix (:func:`padded_batches`).

        The overhead of a pass is ``batch_overhead_tokens`` (about what one pass of weight
        reads costs on a CPU) times ``passes``: generation runs a few decoding passes per
        batch.
        """
        cut = padded_batches(
            [len(seqs[i]) - p for i in rows],
            batch_size=self.batch_size,
            overhead=self.batch_overhead_tokens * passes,
        )
        return [[rows[j] for j in batch] for batch in cut]

    def _plan(
        self, seqs: Sequence[Sequence[int]], limits: Sequence[int], passes: int = 1
    ) -> list[tuple[int, list[int]]]:
        """Prefix groups worth their extra passes (:func:`plan_prefix_groups`), or none."""
        if not (self.prefix_cache and len(seqs) > 1):
            return [(0, list(range(len(seqs))))]
        return plan_prefix_groups(
            seqs,
            limits,
            min_prefix=self.min_prefix_tokens,
            overhead=self.batch_overhead_tokens,
            passes=passes,
        )

    # ------------------------------------------------------------------ API
    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 16,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
    ) -> list[str]:
        """Greedy (or sampled) decoding, batched, with prefix-KV reuse (module docstring).

        With a sequence of seeds, each row samples from its own generator, so a row's
        answer does not depend on the other rows of the call (up to float rounding).
        """
        import torch

        if temperature < 0:
            raise InputDataError(f"temperature must be >= 0, got {temperature}")
        gens: list[Any] = [None] * len(prompts)
        if temperature > 0:
            if seed is not None and not isinstance(seed, int):
                seeds = list(seed)
                if len(seeds) != len(prompts):
                    raise InputDataError(
                        f"need one seed per prompt, got {len(seeds)} for {len(prompts)}"
                    )
                gens = [torch.Generator().manual_seed(int(x) % 2**63) for x in seeds]
            else:
                shared = torch.Generator()
                if seed is None:
                    shared.seed()
                else:
                    shared.manual_seed(seed)
                gens = [shared] * len(prompts)
        if max_new_tokens < 1:
            raise InputDataError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        if not prompts:
            return []
        seqs = self.encode(prompts)
        if any(len(s) == 0 for s in seqs):
            raise InputDataError("cannot generate from an empty prompt")
        results: list[str] = [""] * len(seqs)
        try:
            with torch.inference_mode():
                passes = 1 + min(max_new_tokens, 3)
                for p, rows in self._plan(seqs, [len(s) - 1 for s in seqs], passes):
                    prefix_cache = self._prefix_cache(seqs[rows[0]][:p]) if p else None
                    for batch in self._batches(p, rows, seqs, passes):
                        texts = self._decode_batch(
                            prefix_cache,
                            p,
                            [seqs[i][p:] for i in batch],
                            max_new_tokens,
                            stop,
                            temperature,
                            [gens[i] for i in batch],
                        )
                        for i, t in zip(batch, texts):
                            results[i] = t
        except RuntimeError as exc:
            raise LLMError(f"generation failed in {self.identity}: {exc}") from exc
        return results

    def _decode_batch(
        self,
        prefix_cache: Any,
        p: int,
        rows: Sequence[Sequence[int]],
        max_new_tokens: int,
        stop: Sequence[str],
        temperature: float = 0.0,
        gens: Sequence[Any] = (),
    ) -> list[str]:
        import torch

        def pick(logits: Any, rows_now: Sequence[int]) -> Any:
            if temperature <= 0:
                return logits.argmax(dim=-1)
            probs = torch.softmax(logits.double() / temperature, dim=-1)
            if len({id(gens[i]) for i in rows_now}) == 1:  # one shared generator
                return torch.multinomial(probs, 1, generator=gens[rows_now[0]])[:, 0]
            return torch.cat(
                [
                    torch.multinomial(probs[j : j + 1], 1, generator=gens[i])[:, 0]
                    for j, i in enumerate(rows_now)
                ]
            )

        tok = self._tok
        eos = {int(tok.eos_token_id)} if tok.eos_token_id is not None else set()
        logits, cache, mask, last = self._extend(prefix_cache, p, rows, keep=1)
        active = list(range(len(rows)))
        nxt = pick(logits[:, -1], active)
        generated: list[list[int]] = [[] for _ in rows]
        texts = [""] * len(rows)
        for step in range(max_new_tokens):
            still = []
            for j, i in enumerate(active):
                t = int(nxt[j])
                done = t in eos
                if not done:
                    generated[i].append(t)
                    texts[i] = tok.decode(generated[i], skip_special_tokens=True)
                    done = any(s in texts[i] for s in stop)
                if not done:
                    still.append(j)
            if not still or step == max_new_tokens - 1:
                break
            if len(still) < len(active):
                idx = torch.tensor(still)
                cache.batch_select_indices(idx)
                mask, last, nxt = mask[idx], last[idx], nxt[idx]
                active = [active[j] for j in still]
            mask = torch.cat([mask, torch.ones((len(active), 1), dtype=mask.dtype)], dim=1)
            last = last + 1
            out = self._model(
                input_ids=nxt[:, None],
                attention_mask=mask,
                position_ids=last[:, None],
                use_cache=True,
                logits_to_keep=1,
                **{self._cache_kw: cache},
            )
            self.tokens_fed += len(active)
            self.forward_calls += 1
            nxt = pick(out.logits[:, -1], active)
        return [cut_at_stop(t, stop) for t in texts]

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Summed log-probability of each continuation's tokens after its prompt's tokens.

        With ``prefix_cache`` on, each distinct prompt is run once (after the shared
        prefix) and its continuations are scored from its cache, so scoring L labels of a
        classification task costs about one pass over the queries, not L.
        """
        import torch

        if len(prompts) != len(continuations):
            raise InputDataError(
                f"score needs as many continuations as prompts, got "
                f"{len(continuations)} and {len(prompts)}"
            )
        if not prompts:
            return []
        conts = [
            list(ids)
            for ids in self.tokenizer(list(continuations), add_special_tokens=False)["input_ids"]
        ]
        if any(not c for c in conts):
            raise InputDataError("cannot score an empty continuation")
        try:
            with torch.inference_mode():
                if self.prefix_cache:
                    return self._score_shared(list(prompts), conts)
                return self._score_plain(self.encode(prompts), conts)
        except RuntimeError as exc:
            raise LLMError(f"scoring failed in {self.identity}: {exc}") from exc

    def _score_plain(self, heads: list[list[int]], conts: list[list[int]]) -> list[float]:
        """One left-padded pass over each full prompt + continuation."""
        import torch

        seqs = [h + c for h, c in zip(heads, conts)]
        out = [0.0] * len(seqs)
        for batch in self._batches(0, list(range(len(seqs))), seqs):
            keep = max(len(conts[i]) for i in batch) + 1
            logits, _, _, _ = self._extend(None, 0, [seqs[i] for i in batch], keep=keep)
            logp = torch.log_softmax(logits.double(), dim=-1)
            for j, i in enumerate(batch):
                n = len(conts[i])
                # logits at position t predict token t+1; the row ends at keep-1
                lp = logp[j, keep - 1 - n : keep - 1]
                out[i] = float(lp.gather(1, torch.tensor(conts[i])[:, None]).sum())
        return out

    def _score_shared(self, prompts: list[str], conts: list[list[int]]) -> list[float]:
        """Run each distinct prompt once after the shared prefix; then its continuations."""
        import torch

        uniq = list(dict.fromkeys(prompts))
        where = {text: i for i, text in enumerate(uniq)}
        heads = self.encode(uniq)
        rows_of: list[list[int]] = [[] for _ in uniq]
        for r, text in enumerate(prompts):
            rows_of[where[text]].append(r)
        out = [0.0] * len(prompts)
        for p, group in self._plan(heads, [len(h) - 1 for h in heads], passes=2):
            prefix_cache = self._prefix_cache(heads[group[0]][:p]) if p else None
            for batch in self._batches(p, group, heads):
                logits, cache, mask, last = self._extend(
                    prefix_cache, p, [heads[u][p:] for u in batch], keep=1
                )
                first = torch.log_softmax(logits[:, -1].double(), dim=-1)
                todo: list[tuple[int, int]] = []  # (row, index of its prompt in batch)
                for j, u in enumerate(batch):
                    for r in rows_of[u]:
                        out[r] = float(first[j, conts[r][0]])
                        if len(conts[r]) > 1:
                            todo.append((r, j))
                if todo:
                    self._score_rest(todo, conts, cache, mask, last, out)
        return out

    def _score_rest(
        self,
        todo: list[tuple[int, int]],
        conts: list[list[int]],
        cache: Any,
        mask: Any,
        last: Any,
        out: list[float],
    ) -> None:
        """Add the log-probs of continuation tokens 2.. by feeding tokens 1..n-1."""
        import torch

        idx = torch.tensor([j for _, j in todo])
        cache.batch_select_indices(idx)  # the batch's cache is not used again: no copy
        width = max(len(conts[r]) - 1 for r, _ in todo)
        ids = torch.full((len(todo), width), int(self._tok.pad_token_id), dtype=torch.long)
        cmask = torch.zeros((len(todo), width), dtype=torch.long)
        for i, (r, _) in enumerate(todo):
            toks = conts[r][:-1]
            ids[i, : len(toks)] = torch.tensor(toks)
            cmask[i, : len(toks)] = 1  # right padding: pads come after every real token
        pos = last[idx][:, None] + 1 + torch.arange(width)[None, :]
        res = self.hf_model(
            input_ids=ids,
            attention_mask=torch.cat([mask[idx], cmask], dim=1),
            position_ids=pos,
            use_cache=True,
            **{self._cache_kw: cache},
        )
        self.tokens_fed += ids.numel()
        self.forward_calls += 1
        logp = torch.log_softmax(res.logits.double(), dim=-1)
        for i, (r, _) in enumerate(todo):
            tgt = torch.tensor(conts[r][1:])
            out[r] += float(logp[i, : len(tgt)].gather(1, tgt[:, None]).sum())

    @property
    def num_layers(self) -> int:
        """Number of transformer layers of the loaded model."""
        return int(self.hf_model.config.num_hidden_layers)

    def _check_layers(self, layers: Sequence[int]) -> None:
        n_layers = self.num_layers
        bad = [layer for layer in layers if not -n_layers - 1 <= layer <= n_layers]
        if bad:
            raise InputDataError(f"layers {bad} out of range for a {n_layers}-layer model")

    def hidden_states(
        self,
        prompts: Sequence[str],
        *,
        layers: Sequence[int],
        positions: Sequence[Sequence[int]] | None = None,
    ) -> list[np.ndarray]:
        """Hidden states at ``layers`` and token ``positions`` (plain left-padded batches)."""
        import torch

        seqs = self.encode(prompts)
        self._check_layers(layers)
        pos_lists = [list(ps) for ps in positions] if positions is not None else [[-1]] * len(seqs)
        if len(pos_lists) != len(seqs):
            raise InputDataError("positions must have one list per prompt")
        out: list[np.ndarray] = [np.empty(0)] * len(seqs)
        with torch.inference_mode():
            for batch in self._batches(0, list(range(len(seqs))), seqs):
                rows = [seqs[i] for i in batch]
                s = max(len(r) for r in rows)
                res, _, _ = self._run_after(None, 0, rows, keep=1, output_hidden_states=True)
                hs = torch.stack([res.hidden_states[layer] for layer in layers], dim=1)
                for j, i in enumerate(batch):
                    n = len(rows[j])
                    idx = [(q if q >= 0 else n + q) for q in pos_lists[i]]
                    if any(not 0 <= q < n for q in idx):
                        raise InputDataError(
                            f"prompt {i}: positions {pos_lists[i]} outside 0..{n - 1}"
                        )
                    cols = torch.tensor([s - n + q for q in idx])
                    out[i] = hs[j][:, cols].double().numpy()
        return out

    def prompt_states(
        self, texts: Sequence[str], positions: Sequence[int], layer: int
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """States at ``positions`` of ``texts[0]`` and at every text's last token.

        The token prefix all texts share (the instruction and the demonstrations) runs
        once; the ``positions`` states come from that pass, and every text's own tokens
        continue from a copy of its key/value cache, in the padded batches of
        :meth:`generate`. Positions past the shared prefix fall back to two plain
        :meth:`hidden_states` calls. Both give the same states up to rounding (tested).
        See :meth:`WhiteBoxLLM.prompt_states`.
        """
        import torch

        seqs = self.encode(list(texts))
        # the shared prefix, keeping at least the last token of every row to compute
        p = max(0, min([len(s) - 1 for s in seqs] + [common_prefix_len(seqs[0], s) for s in seqs]))
        if not positions or max(positions) >= p:
            return super().prompt_states(texts, positions, layer)
        self._check_layers([layer])
        fed = self.tokens_fed
        last: list[np.ndarray] = [np.empty(0)] * len(seqs)
        with torch.inference_mode():
            head = self._prefix_pass(seqs[0][:p], output_hidden_states=True)
            demo = head.hidden_states[layer][0, list(positions)].double().numpy()
            for batch in self._batches(p, list(range(len(seqs))), seqs):
                res, _, _ = self._run_after(
                    output_cache(head),
                    p,
                    [seqs[i][p:] for i in batch],
                    keep=1,
                    output_hidden_states=True,
                )
                hs = res.hidden_states[layer]
                for j, i in enumerate(batch):
                    last[i] = hs[j, -1].double().numpy()
        return demo, np.stack(last), self.tokens_fed - fed


def cache_argument(model: Any) -> str:
    """The name under which ``model``'s forward takes its key/value cache.

    transformers 5.24 renamed ``past_key_values`` to ``cache`` (the old name warns and goes
    in 5.40); iclopt supports transformers from 4.46, which know only the old one.
    """
    import inspect

    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def output_cache(out: Any) -> Any:
    """The key/value cache of a model output, under either name (see :func:`cache_argument`)."""
    return out["cache"] if "cache" in out else out.past_key_values


def __getattr__(name: str) -> Any:
    """``SMOLLM2_GGUF`` and ``smollm2`` moved to :mod:`iclopt.llms.embedded`."""
    if name in ("SMOLLM2_GGUF", "smollm2"):
        from iclopt.llms import embedded

        return getattr(embedded, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
