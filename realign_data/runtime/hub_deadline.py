"""A deadline on every call to the Hugging Face Hub.

``huggingface_hub`` (2.x) sends every request through one shared HTTP client made by a factory, created with
``timeout=None``: a Hub (or a proxy, or an ``HF_ENDPOINT``) that accepts the connection and never answers holds a
push forever. :func:`hub_deadline` installs, for the duration of a block, a factory whose client gives each request
``timeout`` seconds for connecting, sending, and for each read (``huggingface_hub`` passes its own, shorter
timeouts where it has them: ``HF_HUB_ETAG_TIMEOUT``, ``HF_HUB_DOWNLOAD_TIMEOUT``); ``datasets.push_to_hub`` goes
through the same client. :func:`timed_out` tells whether a failure was such a deadline, for the one sentence.
:func:`hub_reachable` is the one short probe that tells an offline machine before anything waits on the Hub.
"""

from __future__ import annotations

import contextlib
import os
from typing import Iterator, Optional

HUB_TIMEOUT = 60.0  # seconds one Hub request may wait for the connection or for the next bytes of its answer
_current: list[float] = []


@contextlib.contextmanager
def hub_deadline(timeout: Optional[float] = HUB_TIMEOUT) -> Iterator[None]:
    """Give every Hub request made inside the block ``timeout`` seconds per step (None: no deadline)."""
    if timeout is None:
        yield
        return
    from huggingface_hub.utils import _http

    client = getattr(_http, "httpx2", None) or __import__("httpx")
    previous = _http._GLOBAL_CLIENT_FACTORY

    def factory():
        return client.Client(
            event_hooks={"request": [_http.hf_request_event_hook]}, follow_redirects=True, timeout=timeout
        )

    _http.set_client_factory(factory)  # closes the shared client: the next request makes one with the deadline
    _current.append(timeout)
    try:
        yield
    finally:
        _current.pop()
        _http.set_client_factory(previous)


def current_timeout() -> Optional[float]:
    """The deadline of the innermost :func:`hub_deadline` block, or None outside one."""
    return _current[-1] if _current else None


def timed_out(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a request that ran past its deadline."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, TimeoutError) or "Timeout" in type(exc).__name__:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def hub_reachable(timeout: float = 3.0) -> bool:
    """False when ``HF_HUB_OFFLINE`` is set or the Hub (``HF_ENDPOINT``, default huggingface.co) cannot be reached
    within ``timeout`` seconds (one TCP connection, no retries)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    import socket
    from urllib.parse import urlsplit

    url = urlsplit(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        port = url.port or (80 if url.scheme == "http" else 443)
        with socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout):
            return True
    except OSError:
        return False
