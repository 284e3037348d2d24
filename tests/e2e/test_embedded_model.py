"""The embedded SmolLM2 model end to end: ``fleet up`` defaults, the OpenAI SDK through Envoy."""

from __future__ import annotations

import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.harness import UpFleet

pytestmark = [pytest.mark.envoy, pytest.mark.model, pytest.mark.timeout(900)]

QUESTION: list[ChatCompletionMessageParam] = [
    {"role": "user", "content": "What is the capital of France?"}
]


def test_the_capital_of_france_is_paris_streamed_and_not(procs, tmp_path):
    import openai

    fleet = UpFleet(procs, tmp_path / "workdir", nodes=1)
    banner = fleet.wait_ready(840)
    print(f"fleet up with the embedded model: {banner}")
    client = openai.OpenAI(base_url=fleet.base_url, api_key="unused", max_retries=0, timeout=120)
    (model,) = [m.id for m in client.models.list()]
    assert model == "smollm2-135m-instruct"

    reply = client.chat.completions.create(
        model=model, messages=QUESTION, max_tokens=24, temperature=0
    )
    assert "Paris" in (reply.choices[0].message.content or "")

    parts = [
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model=model, messages=QUESTION, max_tokens=24, temperature=0, stream=True
        )
        if chunk.choices
    ]
    assert len([p for p in parts if p]) > 1, "expected the answer in several chunks"
    assert "Paris" in "".join(parts)
