"""Filler for any OpenAI-compatible chat-completions endpoint (vLLM, TGI, SGLang, hosted APIs).

One ``httpx.Client`` (pooled keep-alive connections, ``TCP_NODELAY``) shared by ``concurrency`` worker threads;
``tenacity`` retries HTTP 408/409/425/429/5xx, connection errors, timeouts, unreadable answers and empty ones
(HTTP 200 with null or empty content: never an answer, so never a final fill or eval answer) with jittered
exponential backoff (``Retry-After`` honoured when it makes sense: seconds or an HTTP date, negative taken as 0,
capped at ``max_backoff``); other HTTP errors fail at once. The image is sent as a base64 ``data:`` URL, before the
text (one user turn, image first, for fills and evaluation alike).

Nothing a server does can hang or crash a build: every attempt has a **total deadline** (``timeout`` seconds for
connecting, sending and the whole answer; a server trickling one byte a second is cut off by a watchdog that shuts
the socket down), so a request ends within ``(max_retries + 1) * timeout`` plus the waits between attempts. A
request that still fails yields a :class:`FillResult` with ``error`` set and ``transient`` (the service's fault: a
re-run retries it), which the builder records per seed. :meth:`OpenAIFiller.stream` keeps a bounded window of
``concurrency`` requests in flight and yields answers as they finish (the evaluation's client).
The API key is read from an environment variable (``OPENAI_API_KEY`` unless ``api_key_env`` names another) and is
never logged or written anywhere: a key passed as the variable's name is refused, credentials in ``base_url``
are redacted in :meth:`describe` and scrubbed from error messages (:mod:`realign_data.runtime.redact`).

httpx + tenacity rather than the ``openai`` SDK: the retry policy is stated in one place (what is retried, how
long to wait, the deadline of an attempt).
"""

from __future__ import annotations

import base64
import email.utils
import io
import json
import math
import os
import socket
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import Any, Iterator, Optional, Sequence

from realign_data.building.fillers.base import FillerError, FillResult, VLMBackend, clean_generation
from realign_data.runtime.redact import check_env_name, redact_url, scrub

RETRY_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


class _Retryable(Exception):
    """A failed attempt worth another one; ``retry_after`` is the server's ``Retry-After`` in seconds."""

    def __init__(self, message: str, retry_after: Optional[float] = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class _Failed(Exception):
    """A failure that another attempt would not fix (HTTP 4xx, an unreadable answer)."""


def image_data_url(load_image=None, image_bytes=None) -> str:
    """``data:image/...;base64,...`` of the file bytes as they are (JPEG/PNG), else the image as PNG."""
    data = image_bytes() if image_bytes is not None else None
    if data:
        mime = (
            "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "image/webp" if data[8:12] == b"WEBP" else "image/jpeg"
        )
    else:
        buf = io.BytesIO()
        load_image().convert("RGB").save(buf, format="PNG")
        data, mime = buf.getvalue(), "image/png"
    return f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"


def retry_after_seconds(value: Optional[str], now: Optional[float] = None) -> Optional[float]:
    """A ``Retry-After`` header in seconds from now (delta-seconds or an HTTP date), never negative; None when it
    is absent or unreadable (then our own backoff applies). Capping is the caller's."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(value).timestamp() - (time.time() if now is None else now)
        except (TypeError, ValueError, IndexError, OverflowError):
            return None
    return max(0.0, seconds) if math.isfinite(seconds) else None


def _shutdown(sock) -> None:
    """Wake a thread blocked reading ``sock`` (closing it from another thread would not, on Linux)."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


class OpenAIFiller(VLMBackend):
    """Fill (or answer) through ``POST {base_url}/chat/completions``.

    Args:
        model: model name sent in the request (``--model``).
        base_url: endpoint root, e.g. ``http://localhost:8000/v1`` (default ``$OPENAI_BASE_URL`` or OpenAI).
        api_key_env: name of the environment variable holding the key (may be unset for local servers).
        concurrency: requests in flight (default 16).
        max_retries: retries after the first attempt for 429/5xx/timeouts (default 5).
        timeout: seconds one attempt may take in all: connecting, sending and reading the whole answer (default 60).
        backoff: first backoff in seconds, doubled each retry (plus up to the same again of jitter), capped at
            ``max_backoff``.
        max_tokens / temperature: generation settings (greedy ``0.0`` by default).
    """

    name = "openai"

    def __init__(
        self,
        model: Optional[str] = None,
        *,
        base_url: Optional[str] = None,
        api_key_env: str = "OPENAI_API_KEY",
        concurrency: int = 16,
        max_retries: int = 5,
        timeout: float = 60.0,
        backoff: float = 0.5,
        max_backoff: float = 20.0,
        max_tokens: int = 256,
        temperature: float = 0.0,
        seed: int = 0,
    ) -> None:
        import httpx

        if not model:
            raise FillerError("the openai filler needs --model (the model name the endpoint serves)")
        if concurrency < 1:
            raise FillerError(f"concurrency must be >= 1, got {concurrency}")
        self.model = model
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        self.concurrency, self.max_retries, self.timeout = concurrency, max_retries, timeout
        self.backoff, self.max_backoff = backoff, max_backoff
        self.max_tokens, self.temperature, self.seed = max_tokens, temperature, seed
        mistake = check_env_name(api_key_env)
        if mistake:
            raise FillerError(mistake)
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self.api_key_env, self.api_key_set = api_key_env, bool(key)
        userinfo = self.base_url.split("://", 1)[-1].split("/", 1)[0].rpartition("@")[0]
        self._secrets = [s for s in (key, userinfo, *userinfo.split(":")) if s and len(s) >= 4]
        # httpx writes headers and body separately: without TCP_NODELAY, Nagle's algorithm and the server's
        # delayed ACK hold the body back ~40 ms per request (measured: 0.78 -> 0.98 of ideal throughput)
        transport = httpx.HTTPTransport(
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
            limits=httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency),
        )
        root, _, query = self.base_url.split("#", 1)[0].partition("?")  # a query (?api-version=...) goes on each call
        self._client = httpx.Client(
            base_url=root.rstrip("/") + "/", params=query or None, headers=headers, timeout=timeout, transport=transport
        )
        self._pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="realign-openai")

    # ------------------------------------------------------------------------------------------ HTTP
    def _body(self, prompt: str, load_image, image_bytes, max_tokens: Optional[int] = None) -> dict:
        """The request: one user turn, the image *before* the text (as LLaVA and Qwen-VL were trained, and as the
        local transformers backend builds it, so a model sees the same conversation whichever runs it). An item may
        carry its own ``max_tokens`` as a fourth element (the evaluation mixes POPE and CHAIR bounds)."""
        content: list[dict] = []
        if load_image is not None or image_bytes is not None:
            content.append({"type": "image_url", "image_url": {"url": image_data_url(load_image, image_bytes)}})
        content.append({"type": "text", "text": prompt})
        return {
            "model": self.model,
            "messages": [{"role": "user", "content": content}],
            "max_tokens": max_tokens or self.max_tokens,
            "temperature": self.temperature,
            "seed": self.seed,
        }

    def _attempt(self, body: dict) -> str:
        """One POST, over by ``timeout`` seconds whatever the server does: the answer text, or
        :class:`_Retryable` / :class:`_Failed`."""
        import httpx

        deadline = time.monotonic() + self.timeout
        late = f"timeout: no complete answer within {self.timeout:g} s"
        try:
            with self._client.stream("POST", "chat/completions", json=body) as resp:
                data = self._read_until(resp, deadline, late)
        except httpx.TimeoutException:
            raise _Retryable(late) from None
        except httpx.TransportError as e:
            raise _Retryable(late if time.monotonic() >= deadline else f"connection error: {e}") from None
        if resp.status_code >= 400:
            if resp.status_code in RETRY_STATUS:
                raise _Retryable(f"HTTP {resp.status_code}", retry_after_seconds(resp.headers.get("Retry-After")))
            raise _Failed(f"HTTP {resp.status_code}")
        try:
            text = json.loads(data)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as e:  # garbage (a proxy's page): maybe next time
            raise _Retryable(f"bad response: {type(e).__name__}: {str(e)[:200]}") from None
        if isinstance(text, list):  # content parts
            text = "".join(p.get("text", "") for p in text if isinstance(p, dict))
        text = clean_generation(text or "") if isinstance(text, str) or text is None else None
        if not text:  # HTTP 200 with null/empty content: the service's fault (overload, a filter), not an answer
            raise _Retryable("empty answer (HTTP 200 with null or empty content)")
        return text

    @staticmethod
    def _read_until(resp, deadline: float, late: str) -> bytes:
        """The whole body by ``deadline``: checked between chunks (a trickle), and a watchdog shuts the socket down
        if the server goes silent (a blocked read would otherwise wait its own read timeout)."""
        stream = resp.extensions.get("network_stream")
        sock = stream.get_extra_info("socket") if stream is not None else None
        watchdog = threading.Timer(max(0.0, deadline - time.monotonic()), _shutdown, (sock,)) if sock else None
        if watchdog is not None:
            watchdog.daemon = True
            watchdog.start()
        chunks = []
        try:
            for chunk in resp.iter_bytes():
                chunks.append(chunk)
                if time.monotonic() > deadline:
                    raise _Retryable(late)
        finally:
            if watchdog is not None:
                watchdog.cancel()
        return b"".join(chunks)

    def _wait(self, state) -> float:
        """tenacity wait: the server's Retry-After when it gave one, else jittered exponential backoff."""
        from tenacity import wait_exponential_jitter

        hint = getattr(state.outcome.exception(), "retry_after", None)
        if hint is not None:  # already >= 0; a huge one is capped (a wait past the deadline helps nobody)
            return min(self.max_backoff, hint)
        return wait_exponential_jitter(multiplier=self.backoff, max=self.max_backoff, jitter=self.backoff)(state)

    def _post(self, item) -> FillResult:
        from tenacity import Retrying, retry_if_exception_type, stop_after_attempt

        try:
            body = self._body(*item)
        except Exception as e:  # noqa: BLE001 - unreadable image etc.
            return FillResult(None, error=f"request not built: {type(e).__name__}: {e}", attempts=0)
        retrying = Retrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=self._wait,
            reraise=True,
            retry=retry_if_exception_type(_Retryable),
        )
        try:
            text = retrying(self._attempt, body)
        except _Retryable as e:
            n = retrying.statistics["attempt_number"]
            return FillResult(None, error=scrub(f"{e} after {n} attempts", self._secrets), attempts=n, transient=True)
        except _Failed as e:  # the service refused or garbled it: a later run (fixed key, server back) may succeed
            return FillResult(
                None, error=scrub(str(e), self._secrets), attempts=retrying.statistics["attempt_number"], transient=True
            )
        except Exception as e:  # noqa: BLE001 - whatever a server does, the build goes on; a re-run retries it
            return FillResult(
                None,
                error=scrub(f"unexpected: {type(e).__name__}: {e}", self._secrets),
                attempts=retrying.statistics.get("attempt_number", 1),
                transient=True,
            )
        return FillResult(text, attempts=retrying.statistics["attempt_number"])

    def generate(self, items: list[tuple[str, Any, Any]]) -> list[FillResult]:
        return list(self._pool.map(self._post, items))

    def stream(self, items: Sequence[tuple[str, Any, Any]]) -> Iterator[list[tuple[int, FillResult]]]:
        """``(index, result)`` pairs as requests finish, with at most ``concurrency`` requests in flight: a new one
        starts as soon as one ends (no barrier, so one slow answer idles nobody). Each yield holds the requests
        that finished since the last one; every item is yielded once. Closing the generator cancels what has
        not started."""
        pending: dict = {}
        queue = iter(enumerate(items))
        try:
            while True:
                for k, item in queue:
                    pending[self._pool.submit(self._post, item)] = k
                    if len(pending) >= self.concurrency:
                        break
                if not pending:
                    return
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                yield [(pending.pop(f), f.result()) for f in done]
        finally:
            for f in pending:
                f.cancel()

    def describe(self) -> dict:
        """Provenance (written to the report): credentials in the URL redacted, the key's variable and whether it
        was set, never its value."""
        return {
            "filler": self.name,
            "model": self.model,
            "base_url": redact_url(self.base_url),
            "api_key_env": self.api_key_env,
            "api_key_set": self.api_key_set,
            "concurrency": self.concurrency,
            "max_retries": self.max_retries,
            "max_tokens": self.max_tokens,
            "temperature": self.temperature,
            "request_timeout": self.timeout,
        }

    def close(self) -> None:
        self._pool.shutdown(wait=True)
        self._client.close()
