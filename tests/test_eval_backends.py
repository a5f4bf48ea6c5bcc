"""The two generation backends of ``realign-trl eval`` (issue #23, part 4): the same conversation on both (image
first, then the question), and a bounded window of requests in flight on the endpoint (no barrier)."""

from __future__ import annotations

import base64
import os
import sys
import time

from realign_trl.eval import EvalSuite
from realign_trl.eval.backends import OpenAIBackend, TransformersBackend

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "support"))
from openai_server import OpenAIServer


def test_both_backends_send_the_same_conversation_image_first(sample_corpus, tiny_llava):
    suite = EvalSuite.from_coco(sample_corpus, num_images=1, min_objects=1, benches="chair")
    image_id = next(iter(suite.images))
    prompt = "Is there a cat in the image?"
    item = (prompt, lambda: suite.image(image_id), lambda: suite.images[image_id])

    local = TransformersBackend(str(tiny_llava), device="cpu", batch_size=1)
    seen = []
    template = local.processor.apply_chat_template
    local.processor.apply_chat_template = lambda messages, **kw: seen.append(messages) or template(messages, **kw)
    local._prepare([item])
    local.close()
    [[turn]] = seen

    with OpenAIServer(keep_bodies=True) as srv:
        remote = OpenAIBackend("m", base_url=srv.base_url, max_retries=0)
        [[(text, error)]] = list(remote.generate([item], 8))
        remote.close()
    assert error is None and text
    [body] = srv.bodies
    [sent] = body["messages"]

    assert turn["role"] == sent["role"] == "user"
    assert [p["type"] for p in turn["content"]] == ["image", "text"]
    assert [p["type"] for p in sent["content"]] == ["image_url", "text"]  # the same order: image, then question
    assert turn["content"][1]["text"] == sent["content"][1]["text"] == prompt
    url = sent["content"][0]["image_url"]["url"]
    assert base64.b64decode(url.split(",", 1)[1]) == suite.images[image_id]  # the very image the local model gets


def test_a_slow_answer_idles_no_other_request():
    """Every 16th request (the first of each old chunk of 4 x concurrency) takes 1 s, the others 20 ms. With a
    barrier per chunk the 64 requests take >= 4 s; with a window of 4 in flight the slow ones overlap (~1.5 s)."""
    slow = {f"q{k}" for k in range(0, 64, 16)}
    with OpenAIServer(latency_of=lambda p: 1.0 if p in slow else 0.02) as srv:
        backend = OpenAIBackend("m", base_url=srv.base_url, concurrency=4, max_retries=0)
        items = [(f"q{k}", None, None) for k in range(64)]
        t0 = time.monotonic()
        order = [k for done in backend.stream(items, 8) for k, (text, error) in done if error is None]
        took = time.monotonic() - t0
        backend.close()
        assert srv.max_in_flight <= 4
    assert sorted(order) == list(range(64))  # every answer, each once
    assert order.index(1) < order.index(0)  # answers come as they finish, not in order
    assert took < 3.0, took
