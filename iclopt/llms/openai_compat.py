"""Black-box LLMs behind an OpenAI-compatible HTTP API (vLLM, TGI, llama.cpp, OpenAI, ...).

:class:`OpenAIModel` sends one request per prompt, up to ``concurrency`` at a time, with
the ``openai`` client: its timeouts, and its retries with exponential backoff and jitter
on 408/409/429/5xx answers, timeouts and dropped connections, honouring ``Retry-After``.
A request that still fails after its retries raises :class:`~iclopt.errors.LLMError`;
no answer is ever made up for it.

Completion-style prompts go to ``/v1/completions``; chat-style prompts (rendered by
:meth:`OpenAIModel.apply_chat_template`) go to ``/v1/chat/completions``. Label scoring
(:meth:`OpenAIModel.score`) uses ``echo`` + ``logprobs`` on ``/v1/completions``; servers
that return no log-probabilities (e.g. ``transformers serve``) are detected once, and the
:class:`~iclopt.evaluation.Evaluator` then classifies by greedy generation instead.

The API key is read from an environment variable named by ``api_key_env``; it is never
part of the identity (cache keys, artifacts) nor of any error message.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from iclopt.errors import InputDataError, LLMError, MissingDependencyError
from iclopt.llms.base import LLM, cut_at_stop
from iclopt.prompts import Message

__all__ = ["CHAT_MARK", "OpenAIModel"]

logger = logging.getLogger(__name__)

#: Prefix of a prompt text that holds chat messages (JSON) for the chat endpoint.
CHAT_MARK = "\u2063iclopt-chat\u2063"

#: Placeholder sent when no key is set (local servers ignore it).
_NO_KEY = "no-key-set"


def _public_url(url: str) -> str:
    """``url`` without user info, query or fragment, and without a trailing slash."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


class _Counters:
    """Thread-safe request statistics of one backend (see :meth:`OpenAIModel.counters`)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, **amounts: int) -> None:
        with self._lock:
            for name, n in amounts.items():
                self.values[name] = self.values.get(name, 0) + n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self.values)


def _counting_transport(counters: _Counters) -> Any:
    """An ``httpx`` transport that counts attempts, retries and failures by kind."""
    import httpx2

    class CountingTransport(httpx2.HTTPTransport):
        def handle_request(self, request: Any) -> Any:
            retry = int(request.headers.get("x-stainless-retry-count", "0") or 0)
            counters.add(attempts=1, retries=int(retry > 0))
            try:
                response = super().handle_request(request)
            except httpx2.TimeoutException:
                counters.add(failed_timeout=1)
                raise
            except httpx2.TransportError:
                counters.add(failed_connection=1)
                raise
            if response.status_code >= 400:
                counters.add(**{f"failed_http_{response.status_code}": 1})
            return response

    return CountingTransport


class OpenAIModel(LLM):
    """A model served over an OpenAI-compatible API.

    Args:
        model: Model name the server knows (the ``model`` field of each request).
        base_url: API root, e.g. ``http://127.0.0.1:8000/v1``; ``None`` reads
            ``$OPENAI_BASE_URL``, else OpenAI's own API.
        api_key_env: Name of the environment variable holding the API key. If it is not
            set, a placeholder is sent (local servers need no key).
        concurrency: Requests in flight at once.
        timeout: Seconds before one request attempt is abandoned (then retried).
        max_retries: Retries per request (408/409/429/5xx, timeouts, dropped
            connections), with exponential backoff and jitter; ``Retry-After`` is honoured.
        logprobs: Whether the server returns log-probabilities with ``echo``; ``None``
            asks the server once, on first need.

    Example:
        >>> llm = OpenAIModel("Qwen/Qwen2.5-7B-Instruct", base_url="http://localhost:8000/v1")
        >>> llm.generate(["Input: 2+2\\nOutput:"], max_new_tokens=4, stop=["\\n"])  # doctest: +SKIP
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 8,
        timeout: float = 60.0,
        max_retries: int = 5,
        logprobs: bool | None = None,
    ) -> None:
        self.model = model
        self.base_url = base_url
        self.api_key_env = api_key_env
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.logprobs = logprobs
        self._client: Any = None
        self._counters = _Counters()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ set-up
    def _validate(self) -> None:
        if not self.model:
            raise InputDataError("an openai model needs a name: openai:MODEL_NAME")
        for name, value, low in (
            ("concurrency", self.concurrency, 1),
            ("max_retries", self.max_retries, 0),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise InputDataError(
                    f"The {name!r} parameter of OpenAIModel must be an int in [{low}, inf). "
                    f"Got {value!r} instead."
                )
        if not isinstance(self.timeout, (int, float)) or not self.timeout > 0:
            raise InputDataError(
                f"The 'timeout' parameter of OpenAIModel must be a number of seconds > 0. "
                f"Got {self.timeout!r} instead."
            )
        if not self.api_key_env.replace("_", "").isalnum():
            raise InputDataError(
                f"--api-key-env takes the NAME of an environment variable, got {self.api_key_env!r}"
            )

    @property
    def url(self) -> str:
        """The API root requests go to, without credentials."""
        url = self.base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise InputDataError(f"--base-url must be an http(s) URL, got {_public_url(url)!r}")
        return _public_url(url)

    @property
    def identity(self) -> str:
        """``openai:<model>@<base url>``: what the server answers for; never the key."""
        return f"openai:{self.model}@{self.url}"

    def _key(self) -> str:
        return os.environ.get(self.api_key_env) or ""

    def client(self) -> Any:
        """The ``openai.OpenAI`` client (created on first use)."""
        with self._lock:
            if self._client is None:
                self._validate()
                try:
                    import httpx2
                    import openai
                except ImportError:
                    raise MissingDependencyError(
                        "the openai backend needs the openai client: pip install 'iclopt[openai]'"
                    ) from None
                limits = httpx2.Limits(
                    max_connections=self.concurrency, max_keepalive_connections=self.concurrency
                )
                transport = _counting_transport(self._counters)(limits=limits)
                self._client = openai.OpenAI(
                    base_url=self.url,
                    api_key=self._key() or _NO_KEY,
                    timeout=float(self.timeout),
                    max_retries=self.max_retries,
                    http_client=openai.DefaultHttpxClient(transport=transport, limits=limits),
                )
            return self._client

    def prepare(self) -> OpenAIModel:
        """Check the options and create the client now (see :meth:`LLM.prepare`)."""
        self.client()
        return self

    def counters(self) -> dict[str, int]:
        """Cumulative request statistics since creation.

        Keys: ``requests`` (answered prompts), ``attempts`` (HTTP attempts), ``retries``,
        ``failed_timeout``, ``failed_connection``, ``failed_http_<status>``,
        ``prompt_tokens`` and ``completion_tokens`` (from the server's ``usage``, or
        estimated where a response has none).
        """
        return self._counters.snapshot()

    # ------------------------------------------------------------------ requests
    def _scrub(self, text: str) -> str:
        key = self._key()
        return text.replace(key, "***") if key else text

    def _error(self, exc: Exception, what: str) -> LLMError:
        """One clear line for a request that failed after its retries."""
        import openai

        where = f"{what} at {self.url} (model {self.model!r})"
        if isinstance(exc, openai.AuthenticationError):
            msg = f"{where} refused the API key (HTTP 401); put the key in ${self.api_key_env}"
        elif isinstance(exc, openai.APIStatusError):
            body = str(getattr(exc, "message", "") or "").strip().splitlines()
            detail = body[0][:200] if body else ""
            msg = f"{where} failed with HTTP {exc.status_code}"
            if exc.status_code in (408, 409, 429) or exc.status_code >= 500:
                msg += f" after {self.max_retries} retries"
            msg += f": {detail}" if detail else ""
        elif isinstance(exc, openai.APITimeoutError):
            msg = (
                f"{where} timed out ({self.timeout:g} s) after {self.max_retries} retries; "
                "raise --timeout or check the server"
            )
        elif isinstance(exc, openai.APIConnectionError):
            msg = f"{where}: no connection after {self.max_retries} retries (is the server up?)"
        else:
            msg = f"{where} failed: {type(exc).__name__}: {exc}"
        return LLMError(self._scrub(msg))

    def _run(self, jobs: Sequence[Callable[[], Any]], what: str) -> list[Any]:
        """Run ``jobs`` with at most ``concurrency`` in flight; the first failure raises."""
        import openai

        if not jobs:
            return []
        self.client()
        workers = min(self.concurrency, len(jobs))
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="iclopt-openai")
        try:
            futures = [pool.submit(job) for job in jobs]
            wait(futures, return_when=FIRST_EXCEPTION)
            for f in futures:
                if f.done() and f.exception() is not None:
                    exc = f.exception()
                    for other in futures:
                        other.cancel()
                    if isinstance(exc, openai.OpenAIError):
                        raise self._error(exc, what) from None
                    raise exc  # type: ignore[misc]
            return [f.result() for f in futures]
        finally:
            pool.shutdown(wait=True, cancel_futures=True)

    def _usage(self, response: Any, prompt: str) -> None:
        usage = getattr(response, "usage", None)
        prompt_tokens = getattr(usage, "prompt_tokens", None)
        completion_tokens = getattr(usage, "completion_tokens", None)
        self._counters.add(
            requests=1,
            prompt_tokens=int(prompt_tokens)
            if prompt_tokens is not None
            else self.count_tokens([prompt])[0],
            completion_tokens=int(completion_tokens or 0),
        )

    def _complete(self, prompt: str, **params: Any) -> Any:
        if prompt.startswith(CHAT_MARK):
            messages = json.loads(prompt[len(CHAT_MARK) :])
            response = self.client().chat.completions.create(
                model=self.model, messages=messages, **params
            )
        else:
            response = self.client().completions.create(model=self.model, prompt=prompt, **params)
        if not getattr(response, "choices", None):
            raise LLMError(f"{self.url} (model {self.model!r}) answered without any choice")
        self._usage(response, prompt)
        return response

    # ------------------------------------------------------------------ LLM API
    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        """Estimated tokens of each text (about 4 characters a token).

        Used for budget checks before a call; the charge after a call comes from the
        server's ``usage`` (see :meth:`counters`).
        """
        return [max(1, round(len(t) / 4)) for t in texts]

    def apply_chat_template(self, messages: Sequence[Message]) -> str:
        """Chat messages as one text (a cache key) that :meth:`generate` sends to the chat API."""
        return CHAT_MARK + json.dumps(
            [dict(m) for m in messages], ensure_ascii=False, sort_keys=True
        )

    def generate(
        self,
        prompts: Sequence[str],
        *,
        max_new_tokens: int = 16,
        stop: Sequence[str] = (),
        temperature: float = 0.0,
        seed: int | Sequence[int] | None = None,
    ) -> list[str]:
        """Continuation of each prompt, one request each, ``concurrency`` at a time.

        The text is cut before the first stop string here as well (servers differ in
        whether they include it). ``seed`` is sent as the request's ``seed`` when sampling;
        servers that ignore it sample afresh.
        """
        if temperature < 0:
            raise InputDataError(f"temperature must be >= 0, got {temperature}")
        if max_new_tokens < 1:
            raise InputDataError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        seeds: list[int | None]
        if temperature > 0 and seed is not None and not isinstance(seed, int):
            seeds = [int(s) % 2**31 for s in seed]
            if len(seeds) != len(prompts):
                raise InputDataError(
                    f"need one seed per prompt, got {len(seeds)} for {len(prompts)}"
                )
        else:
            one = seed % 2**31 if temperature > 0 and isinstance(seed, int) else None
            seeds = [one] * len(prompts)
        stops = [s for s in stop if s]

        def job(prompt: str, s: int | None) -> Callable[[], str]:
            def call() -> str:
                params: dict[str, Any] = {"max_tokens": max_new_tokens, "temperature": temperature}
                if 0 < len(stops) <= 4:  # the API's limit; longer lists are cut below
                    params["stop"] = stops
                if s is not None:
                    params["seed"] = s
                choice = self._complete(prompt, **params).choices[0]
                text = choice.message.content if prompt.startswith(CHAT_MARK) else choice.text
                return cut_at_stop(text or "", stops)

            return call

        return self._run([job(p, s) for p, s in zip(prompts, seeds)], "generation")

    def scores_logprobs(self, style: str = "completion") -> bool:
        """Whether the server returns prompt log-probabilities (asked once, then remembered).

        Chat-style prompts are never scored (a chat reply's top log-probabilities cover
        one token, not a whole label).
        """
        if style != "completion":
            return False
        if self.logprobs is None:
            import openai

            probe = "Hello world"
            try:
                response = self._complete(
                    probe, max_tokens=1, temperature=0.0, echo=True, logprobs=1
                )
            except (openai.BadRequestError, openai.UnprocessableEntityError):
                response = None  # the server rejects echo/logprobs
            except openai.OpenAIError as exc:
                raise self._error(exc, "a log-probability probe") from None
            lp = response.choices[0].logprobs if response is not None else None
            self.logprobs = bool(lp is not None and lp.token_logprobs and lp.text_offset)
            logger.info(
                "%s %s prompt log-probabilities",
                self.identity,
                "returns" if self.logprobs else "does not return",
            )
        return self.logprobs

    def score(self, prompts: Sequence[str], continuations: Sequence[str]) -> list[float]:
        """Summed log-probability of each continuation, from ``echo`` + ``logprobs``.

        The prompt and continuation are sent as one text; the tokens that end after the
        prompt's last character are summed.

        Raises:
            LLMError: The server returns no log-probabilities (see :meth:`scores_logprobs`).
        """
        if len(prompts) != len(continuations):
            raise InputDataError(
                f"score needs as many continuations as prompts, got "
                f"{len(continuations)} and {len(prompts)}"
            )
        if any(p.startswith(CHAT_MARK) for p in prompts):
            raise LLMError(f"{self.identity}: chat prompts cannot be scored; use generation")
        if not self.scores_logprobs():
            raise LLMError(
                f"{self.identity} returns no log-probabilities; score labels by generation"
            )

        def job(prompt: str, cont: str) -> Callable[[], float]:
            def call() -> float:
                response = self._complete(
                    prompt + cont, max_tokens=1, temperature=0.0, echo=True, logprobs=1
                )
                lp = response.choices[0].logprobs
                return _continuation_logprob(
                    lp.text_offset, lp.token_logprobs, len(prompt), len(prompt + cont)
                )

            return call

        return self._run([job(p, c) for p, c in zip(prompts, continuations)], "scoring")


def _continuation_logprob(
    offsets: Sequence[int], logprobs: Sequence[float | None], start: int, end: int
) -> float:
    """Sum the log-probabilities of the tokens covering characters ``start..end``.

    A token belongs to the continuation when it begins before ``end`` (the one generated
    token is excluded) and either begins at or after ``start`` or straddles it (a token
    the server merged across the boundary; its end is the next token's offset).
    """
    total, found = 0.0, False
    for i, (off, lp) in enumerate(zip(offsets, logprobs)):
        straddles = i + 1 < len(offsets) and off < start < offsets[i + 1]
        if off < end and (off >= start or straddles):
            if lp is None:
                raise LLMError("the server returned no log-probability for a continuation token")
            total += float(lp)
            found = True
    if not found:
        raise LLMError("the server's echoed tokens do not cover the continuation")
    return total
