"""Real HTTP servers for the openai backend's tests: ``transformers serve`` and a fault proxy.

``TransformersServer`` runs the real ``transformers serve`` (one CPU thread) on a free
loopback port. ``FaultProxy`` sits in front of it and, on a deterministic schedule,
answers 500, answers 429 with ``Retry-After``, answers later than the client's timeout,
or drops the connection; every other request is forwarded unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx2


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class _QuietServer(ThreadingHTTPServer):
    """A test server whose handler errors (a forward the client already gave up on) are not
    printed to stderr, where a CLI run under test would capture them as its own output."""

    def handle_error(self, request: object, client_address: object) -> None:
        pass


class TransformersServer:
    """``transformers serve MODEL_DIR`` on 127.0.0.1, started and stopped by the caller."""

    def __init__(self, model_dir: Path, log: Path) -> None:
        self.model_dir = model_dir
        self.log = log
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def model(self) -> str:
        return str(self.model_dir)

    def start(self, timeout: float = 180.0) -> None:
        exe = shutil.which("transformers", path=str(Path(sys.executable).parent))
        if exe is None:
            raise RuntimeError("transformers serve is missing: pip install 'transformers[serving]'")
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        env.pop("OPENAI_API_KEY", None)
        cmd = [exe, "serve", self.model, "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--device", "cpu", "--dtype", "float32", "--log-level", "warning"]
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"transformers serve exited: {self.log.read_text()[-2000:]}")
            try:
                r = httpx2.post(
                    f"{self.base_url}/completions",
                    json={"model": self.model, "prompt": "Hi", "max_tokens": 1, "temperature": 0},
                    timeout=30,
                )
                if r.status_code == 200:
                    return
            except httpx2.TransportError:
                pass
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"transformers serve did not answer in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=20)
        self.proc = None


#: What the proxy can do to one request.
FORWARD, ERROR_500, RATE_LIMIT, SLOW, DROP = "forward", "500", "429", "slow", "drop"


@dataclass
class Seen:
    """One request the proxy received."""

    t: float
    body_digest: str
    retry: int
    action: str


@dataclass
class FaultProxy:
    """A loopback proxy in front of ``upstream`` that injects faults on a schedule.

    Args:
        upstream: The real server's root, e.g. ``http://127.0.0.1:8000``.
        schedule: Action of request ``i`` is ``schedule[i % len(schedule)]``.
        retry_after: Seconds sent in ``Retry-After`` with each 429.
        slow_seconds: How long a ``slow`` request is held before it is answered.
        down_after: After this many forwarded requests, every request gets a 503.
        echo_auth_status: Answer every request with this status and a body that repeats
            the request's ``Authorization`` header (a server that leaks keys in errors).
    """

    upstream: str
    schedule: Sequence[str] = (FORWARD,)
    retry_after: float = 1.0
    slow_seconds: float = 3.0
    down_after: int | None = None
    echo_auth_status: int | None = None
    seen: list[Seen] = field(default_factory=list)
    auth: set[str] = field(default_factory=set)
    forwarded: int = 0

    def __post_init__(self) -> None:
        self._lock = threading.Lock()
        self._client = httpx2.Client(timeout=120)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                auth = self.headers.get("authorization", "")
                proxy.auth.add(auth)
                if proxy.echo_auth_status is not None:
                    msg = json.dumps({"error": {"message": f"bad request from {auth}"}})
                    self._reply(proxy.echo_auth_status, msg.encode())
                    return
                action = proxy._next(body, int(self.headers.get("x-stainless-retry-count", "0")))
                if action == DROP:
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                if action == SLOW:
                    time.sleep(proxy.slow_seconds)
                if action in (ERROR_500, RATE_LIMIT, "503"):
                    status = {ERROR_500: 500, RATE_LIMIT: 429, "503": 503}[action]
                    self._reply(status, b'{"error": {"message": "injected fault"}}', action)
                    return
                r = proxy._client.post(
                    proxy.upstream + self.path,
                    content=body,
                    headers={"content-type": "application/json"},
                )
                self._reply(r.status_code, r.content)

            def _reply(self, status: int, content: bytes, action: str = FORWARD) -> None:
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(content)))
                    if action == RATE_LIMIT:
                        self.send_header("retry-after", f"{proxy.retry_after:g}")
                    self.end_headers()
                    self.wfile.write(content)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    self.close_connection = True

        self._server = _QuietServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def _next(self, body: bytes, retry: int) -> str:
        with self._lock:
            i = len(self.seen)
            if self.down_after is not None and self.forwarded >= self.down_after:
                action = "503"
            else:
                action = self.schedule[i % len(self.schedule)]
            if action in (FORWARD, SLOW):
                self.forwarded += 1
            digest = hashlib.sha256(body).hexdigest()
            self.seen.append(Seen(time.monotonic(), digest, retry, action))
            return action

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def count(self, action: str) -> int:
        return sum(s.action == action for s in self.seen)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._client.close()


class LogprobServer:
    """A loopback ``/v1/completions`` that returns ``echo`` + ``logprobs`` as vLLM does.

    ``transformers serve`` returns no log-probabilities, so this small server answers
    from a real local model (an :class:`~iclopt.llms.HFModel`): one forward pass over the
    prompt, the log-probability of each prompt token, and one greedy generated token.
    """

    def __init__(self, llm: Any) -> None:
        import torch

        self.llm = llm
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
                out = json.dumps(server.answer(body["prompt"], body["model"], torch)).encode()
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

        self._server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def answer(self, prompt: str, model: str, torch: Any) -> dict[str, Any]:
        tok = self.llm.tokenizer
        enc = tok(prompt, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        with self._lock, torch.inference_mode():
            logits = self.llm.hf_model(input_ids=torch.tensor([ids])).logits[0]
        logp = torch.log_softmax(logits.double(), dim=-1)
        lps: list[float | None] = [None] + [float(logp[i - 1, ids[i]]) for i in range(1, len(ids))]
        nxt = int(logp[-1].argmax())
        gen = tok.decode([nxt])
        return {
            "id": "cmpl-test",
            "object": "text_completion",
            "created": 0,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "text": prompt + gen,
                    "finish_reason": "length",
                    "logprobs": {
                        "tokens": [tok.decode([i]) for i in ids] + [gen],
                        "token_logprobs": [*lps, float(logp[-1, nxt])],
                        "text_offset": [int(s) for s, _ in enc["offset_mapping"]] + [len(prompt)],
                        "top_logprobs": None,
                    },
                }
            ],
            "usage": {
                "prompt_tokens": len(ids),
                "completion_tokens": 1,
                "total_tokens": len(ids) + 1,
            },
        }

    @property
    def base_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
