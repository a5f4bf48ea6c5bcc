"""A real OpenAI-compatible chat-completions server on 127.0.0.1, for tests and benchmarks.

``POST /v1/chat/completions`` answers after a fixed ``latency`` (seconds), or with ``lognormal=(median, p99)`` after
a latency drawn per request from that lognormal distribution (seeded by ``seed``; every latency slept is kept in
``latencies`` and reported by ``GET /v1/stats``). The answer is deterministic:
for a fill prompt ("Answer with slots: ...") every slot is replaced by a fixed word of its kind, so the
result is a plausible, different description; any other prompt gets a fixed caption.

Failure injection, keyed by the prompt text:
* ``fail_first`` — the first N requests of every distinct prompt get ``fail_status`` (e.g. 429, 503);
* ``always_fail_marker`` — prompts containing this string always get ``fail_status``;
* ``fail_after`` — every request after the first N (counted by ``requests``) gets ``fail_status``;
* ``retry_after`` — the ``Retry-After`` header those failures carry (any text: ``-1``, ``1e9``, an HTTP date).
Fault modes for every request, settable while the server runs (``srv.mode = "down"``):
* ``down`` — an outage: every request gets ``fail_status``;
* ``garbage`` — HTTP 200 with a body that is not JSON;
* ``drop`` — the connection is closed without an answer;
* ``null`` / ``empty`` — HTTP 200 whose message content is ``null`` / ``""`` (an overloaded or filtered service);
* ``trickle`` — a valid answer sent one byte every ``trickle_interval`` seconds (a server that never times out a
  read, but never finishes either).
The server counts requests and the peak number in flight; it records the Authorization headers it saw.

    with OpenAIServer(latency=0.05) as srv:
        srv.base_url  # "http://127.0.0.1:PORT/v1"
"""

from __future__ import annotations

import json
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

SLOT_WORDS = {
    "[OBJECT]": "zebra",
    "[COLOR]": "purple",
    "[SIZE]": "huge",
    "[MATERIAL]": "wooden",
    "[COUNT]": "seven",
    "[RELATION]": "far from",
    "[SCENE]": "desert",
    "[CLOTHING]": "scarf",
    "[ATTRIBUTE]": "muddy",
}
DEFAULT_ANSWER = "A small red apple next to a blue car on the grass."


# what the server marks when asked to wrap visual facts (the ModelMasker prompt)
MARK_WORDS = {
    "red": "color",
    "blue": "color",
    "green": "color",
    "yellow": "color",
    "white": "color",
    "black": "color",
    "brown": "color",
    "pink": "color",
    "purple": "color",
    "gray": "color",
    "orange": "color",
    "two": "count",
    "three": "count",
    "left of": "relation",
    "right of": "relation",
    "next to": "relation",
    "above": "relation",
    "below": "relation",
}


def answer_for(prompt: str) -> str:
    marking = re.search(r"wrap every word or phrase that states a visual fact.*?Text: (.*)$", prompt, re.S)
    if marking:
        pattern = r"\b(" + "|".join(sorted(map(re.escape, MARK_WORDS), key=len, reverse=True)) + r")\b"
        return re.sub(
            pattern,
            lambda m: f"[[{MARK_WORDS[m.group(1).lower()]}:{m.group(1)}]]",
            marking.group(1).strip(),
            flags=re.IGNORECASE,
        )
    m = re.search(r"Answer with slots: (.*)$", prompt, re.S)
    if not m:
        return DEFAULT_ANSWER
    text = m.group(1).strip()
    for slot, word in SLOT_WORDS.items():
        text = text.replace(slot, word)
    return text


class OpenAIServer:
    def __init__(
        self,
        latency: float = 0.0,
        *,
        fail_first: int = 0,
        fail_status: int = 429,
        always_fail_marker: str | None = None,
        retry_after: str | None = None,
        drop_idle: bool = False,
        answer=None,
        mode: str | None = None,
        trickle_interval: float = 0.5,
        lognormal: tuple[float, float] | None = None,
        seed: int = 0,
        latency_of=None,
        keep_bodies: bool = False,
    ) -> None:
        import random

        self.latency_of = latency_of  # prompt -> seconds: a test's own latency per prompt
        self.bodies: list[dict] | None = [] if keep_bodies else None  # the request bodies received, in order
        self.lognormal, self._rng = lognormal, random.Random(seed)
        self.latencies: list[float] = []
        self.answer = answer or answer_for  # prompt -> text: a test may construct its own (e.g. bad fills)
        self.mode, self.trickle_interval = mode, trickle_interval
        self.fail_after: int | None = None
        self.latency, self.fail_first, self.fail_status = latency, fail_first, fail_status
        self.always_fail_marker, self.retry_after = always_fail_marker, retry_after
        self.drop_idle = drop_idle  # close every connection after its response without saying so (stale keep-alive)
        self.requests = 0
        self.connections_closed = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.seen: Counter = Counter()
        self.auth_headers: list[str] = []
        self.images_received = 0
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):  # answer without Nagle delays, as production servers (uvicorn, vLLM) do
                super().setup()
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def _send(self, status: int, obj: dict, headers: dict | None = None, trickle: bool = False):
                self._send_raw(status, json.dumps(obj).encode(), headers, trickle)

            def _send_raw(self, status: int, data: bytes, headers: dict | None = None, trickle: bool = False):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                if not trickle:
                    return self.wfile.write(data)
                try:
                    for i in range(len(data)):
                        self.wfile.write(data[i : i + 1])
                        self.wfile.flush()
                        time.sleep(server.trickle_interval)
                except OSError:  # the client gave up
                    self.close_connection = True

            def do_GET(self):  # counters, for a server running in another process (benchmarks)
                if not self.path.endswith("/stats"):
                    return self._send(404, {"error": {"message": "not found"}})
                with server._lock:
                    self._send(
                        200,
                        {
                            "requests": server.requests,
                            "max_in_flight": server.max_in_flight,
                            "images_received": server.images_received,
                            "latencies": server.latencies,
                        },
                    )

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                with server._lock:
                    server.requests += 1
                    server.in_flight += 1
                    server.max_in_flight = max(server.max_in_flight, server.in_flight)
                    if self.headers.get("Authorization"):
                        server.auth_headers.append(self.headers["Authorization"])
                try:
                    if not self.path.split("?", 1)[0].endswith("/chat/completions"):  # a query (?api-version=)
                        return self._send(404, {"error": {"message": "not found"}})
                    content = body["messages"][-1]["content"]
                    parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
                    prompt = "".join(p.get("text", "") for p in parts if p.get("type") == "text")
                    has_image = any(
                        p.get("type") == "image_url" and p["image_url"]["url"].startswith("data:image/") for p in parts
                    )
                    with server._lock:
                        server.seen[prompt] += 1
                        n = server.seen[prompt]
                        server.images_received += has_image
                    with server._lock:
                        if server.bodies is not None:
                            server.bodies.append(body)
                    time.sleep(server.latency_of(prompt) if server.latency_of else server.next_latency())
                    if server.mode == "drop":
                        self.close_connection = True
                        return
                    if server.mode == "garbage":
                        return self._send_raw(200, b"<html>502 Bad Gateway</html>")
                    late = server.fail_after is not None and server.requests > server.fail_after
                    if (
                        server.mode == "down"
                        or late
                        or (server.always_fail_marker and server.always_fail_marker in prompt)
                        or n <= server.fail_first
                    ):
                        headers = {"Retry-After": server.retry_after} if server.retry_after else None
                        return self._send(server.fail_status, {"error": {"message": "injected failure"}}, headers)
                    text = None if server.mode == "null" else "" if server.mode == "empty" else server.answer(prompt)
                    self._send(
                        200,
                        {
                            "id": f"cmpl-{server.requests}",
                            "object": "chat.completion",
                            "model": body.get("model"),
                            "choices": [
                                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}
                            ],
                        },
                        trickle=server.mode == "trickle",
                    )
                finally:
                    with server._lock:
                        server.in_flight -= 1
                    if server.drop_idle:
                        self.close_connection = True

        class Server(ThreadingHTTPServer):
            request_queue_size = 128  # the listen backlog (set before listen(): 5 by default resets a burst of 32)
            daemon_threads = True

            def shutdown_request(self, request):  # the socket is closed when this returns: a client sees the FIN
                super().shutdown_request(request)
                with server._lock:
                    server.connections_closed += 1

        self._httpd = Server(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def next_latency(self) -> float:
        """The latency of the next request: fixed, or drawn from the lognormal (median, p99) distribution."""
        if self.lognormal is None:
            return self.latency
        import math

        median, p99 = self.lognormal
        sigma = math.log(p99 / median) / 2.3263478740408408  # the 99th percentile of N(0, 1)
        with self._lock:
            value = self._rng.lognormvariate(math.log(median), sigma)
            self.latencies.append(value)
        return value

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> OpenAIServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":  # python tests/support/openai_server.py [latency | --lognormal MEDIAN P99 [SEED]]
    import sys

    args = sys.argv[1:]
    if args[:1] == ["--lognormal"]:
        srv = OpenAIServer(lognormal=(float(args[1]), float(args[2])), seed=int(args[3]) if len(args) > 3 else 0)
    else:
        srv = OpenAIServer(float(args[0]) if args else 0.0)
    srv.start()
    print(srv.base_url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        srv.stop()
