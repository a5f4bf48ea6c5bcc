"""Fillers: annotation (model-free), transformers (tiny LLaVA) and OpenAI-compatible HTTP (local server)."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import pytest
from PIL import Image

from realign_data.building.fillers import FillerError, FillRequest, FillResult, fill_prompt, load_filler
from realign_data.building.fillers.annotation import AnnotationFiller, image_facts
from realign_data.building.fillers.openai_compat import OpenAIFiller
from realign_data.building.masking import mask_response

sys.path.insert(0, str(Path(__file__).parent / "support"))
from openai_server import OpenAIServer

RETRIEVED = {
    "instances": [{"category": "dog"}, {"category": "dog"}, {"category": "dog"}, {"category": "cup"}],
    "captions": ["Three brown dogs next to a pink cup.", "A pink cup behind three dogs."],
}


def _png() -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 16), (200, 30, 40)).save(buf, format="PNG")
    return buf.getvalue()


def request(text, annotations=RETRIEVED, original=("apple", "car"), seed=0):
    data = _png()
    return FillRequest(
        instruction="Describe this image.",
        chosen=text,
        masked=mask_response(text),
        load_image=lambda: Image.open(io.BytesIO(data)).convert("RGB"),
        image_bytes=lambda: data,
        annotations=annotations,
        original_categories=original,
        rng_seed=seed,
    )


def test_image_facts_from_instances_and_captions():
    f = image_facts(RETRIEVED)
    assert f["counts"] == {"dog": 3, "cup": 1}
    assert f["attrs"]["dog"]["color"] == "brown" and f["attrs"]["cup"]["color"] == "pink"
    assert "next to" in f["relations"] and "behind" in f["relations"]


def test_annotation_filler_describes_the_retrieved_image():
    (res,) = AnnotationFiller().fill([request("Two red apples to the left of a blue car.")])
    assert res.ok
    # objects of the retrieved image absent from the original, its counts and colours, number agreement
    assert res.text == "Three brown dogs next to a pink cup." or res.text == "Three brown dogs behind a pink cup."


def test_annotation_filler_number_agreement_and_articles():
    (res,) = AnnotationFiller().fill(
        [request("There are two apples.", annotations={"instances": [{"category": "umbrella"}]})]
    )
    assert res.text == "There is an umbrella."  # the answer's own word for one: "a"/"an", not "one"
    (res,) = AnnotationFiller().fill([request("A car.", annotations={"instances": [{"category": "orange"}]})])
    assert res.text == "An orange."


@pytest.mark.parametrize(
    "chosen, instances, expected",
    [
        ("Two dogs are playing.", ["frisbee"], "A frisbee is playing."),  # verb after
        ("A group of sheep grazing.", ["dog", "dog"], "A group of dogs grazing."),  # invariant plural noun
        ("A table with pizza.", ["dog", "dog", "cup"], "A dog with cups."),  # bare mass noun -> bare plural
        ("The dog was running.", ["cat"], "The cat was running."),
        ("An apple.", ["scissors"], "A pair of scissors."),  # plural-only noun in a singular slot
    ],
)
def test_annotation_filler_keeps_the_sentence_grammatical(chosen, instances, expected):
    annotations = {"instances": [{"category": c} for c in instances]}
    (res,) = AnnotationFiller().fill([request(chosen, annotations=annotations, original=())])
    assert res.text == expected


def test_annotation_filler_without_annotations_is_deterministic_and_different():
    text = "A red apple next to a blue car."
    a = AnnotationFiller().fill([request(text, annotations=None, seed=5)])[0].text
    b = AnnotationFiller().fill([request(text, annotations=None, seed=5)])[0].text
    assert a == b and a != text


def test_fill_prompt_names_slots():
    p = fill_prompt(request("Two red apples."))
    assert "[COUNT] [COLOR] [OBJECT]." in p and "Describe this image." in p


def test_load_filler_errors():
    with pytest.raises(FillerError, match="unknown filler"):
        load_filler("magic")
    with pytest.raises(FillerError, match="needs --model"):
        load_filler("openai")
    with pytest.raises(FillerError, match="cannot load VLM"):
        load_filler("transformers", model="/no/such/model")


def test_a_filler_refuses_an_option_it_does_not_take():
    """No catch-all ``**_``: an option a backend does not take is named, with the ones it takes (it used to be
    dropped silently, so a misspelt option changed nothing and said nothing)."""
    from realign_data.building.config import BuildConfig
    from realign_data.building.fillers.openai_compat import OpenAIFiller

    with pytest.raises(
        FillerError,
        match=r"the openai filler takes no option 'batch_size'; its options: model, "
        r"base_url, .*max_tokens",
    ):
        load_filler("openai", model="m", base_url="http://127.0.0.1:9/v1", batch_size=2)
    with pytest.raises(FillerError, match="the annotation filler takes no option 'model'; its options: none"):
        load_filler("annotation", model="m")
    with pytest.raises(TypeError, match="max_new_tokens"):
        OpenAIFiller("m", max_new_tokens=5)
    config = BuildConfig(filler="openai", model="m")  # each backend gets only what it takes
    assert "batch_size" not in config.filler_options() and config.filler_options()["max_tokens"] == 128
    assert "base_url" not in config.filler_options("transformers") and config.filler_options("annotation") == {}


def test_transformers_filler_tiny_llava(tiny_llava):
    f = load_filler("transformers", model=str(tiny_llava), batch_size=2, max_new_tokens=6)
    reqs = [request("Two red apples."), request("A blue car next to a cup."), request("A dog.")]
    out = f.fill(reqs)
    assert len(out) == 3 and all(r.error is None for r in out)
    again = f.fill(reqs)
    assert [r.text for r in out] == [r.text for r in again]  # greedy
    assert f.describe()["model"] == str(tiny_llava)
    # text-only prompts (the model masker): no image in the chat, no pixel values
    texts = f.generate([("Mark the visual facts: a red apple.", None, None)] * 2)
    assert all(r.error is None for r in texts) and texts[0].text == texts[1].text
    assert len(f.complete_text(["Mark the visual facts: a red apple."])) == 1


def test_openai_filler_against_local_server(monkeypatch):
    monkeypatch.setenv("REALIGN_TEST_KEY", "sk-secret")
    with OpenAIServer(latency=0.01) as srv:
        f = OpenAIFiller(model="m", base_url=srv.base_url, api_key_env="REALIGN_TEST_KEY", concurrency=4)
        out = f.fill([request("Two red apples."), request("A blue car.")])
        f.close()
    assert [r.text for r in out] == ["seven purple zebra.", "A purple zebra."]
    assert srv.images_received == 2 and srv.auth_headers == ["Bearer sk-secret"] * 2
    assert "sk-secret" not in repr(f.describe())


def test_a_model_fill_that_echoes_slot_tokens_is_a_failed_fill(monkeypatch):
    """'A brown [OBJECT] on a sofa.' differs from the chosen answer only by its slot: never a rejected answer."""
    filler = OpenAIFiller(model="m", base_url="http://127.0.0.1:9/v1")
    monkeypatch.setattr(
        filler,
        "generate",
        lambda items: [
            FillResult("A brown [object] lying on a red sofa."),
            FillResult("A brown cat lying on a red sofa."),
        ],
    )
    echoed, filled = filler.fill([request("A brown dog lying on a red sofa.")] * 2)
    filler.close()
    assert not echoed.ok and echoed.error == "fill left slots unfilled: [OBJECT]"
    assert filled.ok


def test_openai_filler_retries_429_and_5xx():
    for status in (429, 503):
        with OpenAIServer(fail_first=2, fail_status=status, retry_after="0") as srv:
            f = OpenAIFiller(model="m", base_url=srv.base_url, backoff=0.01, max_retries=3)
            (res,) = f.fill([request("A blue car.")])
            f.close()
        assert res.ok and res.attempts == 3 and srv.requests == 3, status


def test_openai_filler_records_failures():
    with OpenAIServer(always_fail_marker="Sadly", fail_status=500) as srv:
        f = OpenAIFiller(model="m", base_url=srv.base_url, backoff=0.01, max_retries=2)
        ok, bad = f.fill([request("A red apple."), request("Sadly a blue car.")])
        f.close()
    assert ok.ok and not bad.ok
    assert bad.error == "HTTP 500 after 3 attempts" and bad.attempts == 3
    with OpenAIServer(always_fail_marker="Sadly", fail_status=400) as srv:  # not retried
        f = OpenAIFiller(model="m", base_url=srv.base_url, backoff=0.01)
        (bad,) = f.fill([request("Sadly a blue car.")])
        f.close()
    assert bad.error == "HTTP 400" and srv.requests == 1
    f = OpenAIFiller(model="m", base_url="http://127.0.0.1:9/v1", backoff=0.01, max_retries=1, timeout=2)
    (res,) = f.fill([request("A blue car.")])
    f.close()
    assert not res.ok and "connection error" in res.error


def test_openai_filler_reconnects_when_a_kept_alive_connection_went_stale():
    with OpenAIServer(drop_idle=True) as srv:
        f = OpenAIFiller(model="m", base_url=srv.base_url, concurrency=1, max_retries=0)
        (first,) = f.fill([request("A red apple.")])
        # the server has closed the idle connection (a loaded machine can otherwise send the next request before
        # the server thread gets to close it: a race no client can see, not the stale connection tested here)
        deadline = time.monotonic() + 30
        while srv.connections_closed < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        (second,) = f.fill([request("A blue car.")])
        f.close()
    assert first.ok and second.ok and second.attempts == 1 and srv.requests == 2


def test_openai_filler_bounded_concurrency():
    with OpenAIServer(latency=0.1) as srv:
        f = OpenAIFiller(model="m", base_url=srv.base_url, concurrency=4)
        f.fill([request(f"A red apple {i}.") for i in range(12)])
        f.close()
    assert 2 <= srv.max_in_flight <= 4
