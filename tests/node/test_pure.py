"""Pure pieces: request validation, stop sequences, --model parsing, the sim's determinism."""

from __future__ import annotations

import math

import pytest

from node.backends.base import GenerationStats
from node.backends.sim import SimBackend
from node.errors import OpenAIError
from node.generation import stream_text
from node.models import parse_model_spec
from node.openai_schema import chat_sampling, parse_json_object, validate_chat
from node.stops import StopMatcher

OK_MSG = [{"role": "user", "content": "hi"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"messages": OK_MSG}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": "hi"}, "messages"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
        ({"model": "m", "messages": OK_MSG, "max_tokens": -1}, "max_tokens"),
        ({"model": "m", "messages": OK_MSG, "max_tokens": "5"}, "max_tokens"),
        ({"model": "m", "messages": OK_MSG, "temperature": math.nan}, "temperature"),
        ({"model": "m", "messages": OK_MSG, "temperature": 3}, "temperature"),
        ({"model": "m", "messages": OK_MSG, "top_p": 1.5}, "top_p"),
        ({"model": "m", "messages": OK_MSG, "stream": "yes"}, "stream"),
        ({"model": "m", "messages": OK_MSG, "n": 2}, "n"),
        ({"model": 5, "messages": OK_MSG}, "model"),
    ],
)
def test_bad_chat_bodies_name_the_param(body, param):
    with pytest.raises(OpenAIError) as err:
        validate_chat(body)
    assert err.value.status == 400
    assert err.value.param == param
    assert err.value.body()["error"]["type"] == "invalid_request_error"


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b'{"temperature": NaN}', b"\xff\xfe"])
def test_bodies_that_are_not_json_objects_are_400(raw):
    with pytest.raises(OpenAIError) as err:
        parse_json_object(raw)
    assert err.value.status == 400


def test_max_completion_tokens_wins_and_unknown_fields_are_ignored():
    req = validate_chat(
        {"model": "m", "messages": OK_MSG, "max_tokens": 9, "max_completion_tokens": 3, "user": "u"}
    )
    params = chat_sampling(req)
    assert params.max_tokens == 3 and params.temperature == 1.0


@pytest.mark.parametrize(
    ("pieces", "stops", "out"),
    [
        (["Hello", " wor", "ld"], [], "Hello world"),
        (["Hel", "lo. ", "Bye"], ["."], "Hello"),
        (["ab", "cE", "NDxyz"], ["END"], "abc"),
        (["ab", "cEN"], ["END"], "abcEN"),  # a partial match at the end is real text
        (["one two"], ["zz", "two"], "one "),
    ],
)
def test_stop_matcher(pieces, stops, out):
    matcher = StopMatcher(stops)
    text = "".join(matcher.feed(p) for p in pieces) + matcher.flush()
    assert text == out


def test_model_specs():
    assert parse_model_spec("alpha=sim").source == "sim"
    embedded = parse_model_spec("embedded")
    assert (embedded.id, embedded.source) == ("smollm2-135m-instruct", "embedded")
    with pytest.raises(ValueError, match="does not exist"):
        parse_model_spec("x=/no/such/dir")
    bare = parse_model_spec("my-smol")  # SOURCE defaults to the embedded model
    assert (bare.id, bare.source) == ("my-smol", "embedded")
    with pytest.raises(ValueError, match="invalid model id"):
        parse_model_spec("bad id=sim")


async def _sim_text(prompt: str, seed: int | None) -> str:
    backend = SimBackend("s", decode_tps=10_000, prefill_tps=1e9)
    params = chat_sampling(
        validate_chat(
            {
                "model": "s",
                "messages": [{"role": "user", "content": prompt}],
                "max_tokens": 12,
                "seed": seed,
            }
        )
    )
    stats = GenerationStats()
    prompt_obj = backend.encode_chat([{"role": "user", "content": prompt}])
    text = "".join([p async for p in backend.generate(prompt_obj, params, stats)])
    assert stats.completion_tokens == 12
    return text


async def test_sim_output_is_a_function_of_prompt_and_seed():
    a = await _sim_text("hello", 1)
    assert a == await _sim_text("hello", 1)
    assert a != await _sim_text("hello", 2) or a != await _sim_text("other", 1)
    assert len(a.split()) == 12


async def test_stream_text_times_the_generation():
    backend = SimBackend("s", decode_tps=200, prefill_tps=1e9)
    body = {"model": "s", "messages": OK_MSG, "max_tokens": 10}
    params = chat_sampling(validate_chat(body))
    stats = GenerationStats()
    pieces = stream_text(backend, backend.encode_chat(OK_MSG), params, stats)
    assert len([p async for p in pieces]) > 0
    await pieces.aclose()
    assert stats.completion_tokens == 10
    assert 10 / 200 <= stats.generation_s < 5, "10 tokens at 200 tok/s take >= 50 ms"
