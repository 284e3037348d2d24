"""``fleet up`` as a user runs it: progress, the ready banner, node restarts, clean stop."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.e2e.harness import UpFleet
from tests.procs import ProcGroup, http_json, port_is_free, wait_until

pytestmark = [pytest.mark.envoy, pytest.mark.timeout(240)]

QUESTION: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello"}]


@pytest.fixture(scope="module")
def up(module_procs: ProcGroup) -> Iterator[UpFleet]:
    fleet = UpFleet(
        module_procs,
        module_procs.log_dir / "workdir",
        "--model",
        "alpha=sim",
        "--model",
        "beta=sim",
        "--sim-decode-tps",
        "200",
    )
    fleet.wait_ready(180)
    yield fleet


def test_ready_banner_shows_the_endpoint_and_examples(up):
    out = up.proc.log_text()
    assert f"OpenAI endpoint {up.base_url}" in out
    assert f"curl -s {up.base_url}/chat/completions" in out
    assert f'OpenAI(base_url="{up.base_url}"' in out
    # Progress while waiting, one line per node state change, before the banner.
    banner_at = out.index("ready in")
    for node in ("node-1", "node-2"):
        assert out.index(f"{node}: alpha loaded") < banner_at
    # Children log to files, not to the console.
    assert "logs in" in out
    for name in ("control", "node-1", "node-2", "sidecar-1", "sidecar-2", "envoy"):
        assert (up.workdir / "logs" / f"{name}.log").is_file()


def test_the_openai_sdk_gets_answers_for_every_model(up):
    client = openai.OpenAI(base_url=up.base_url, api_key="unused", max_retries=0)
    assert {m.id for m in client.models.list()} == {"alpha", "beta"}
    for model in ("alpha", "beta"):
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=QUESTION, max_tokens=3
        )
        assert raw.headers["x-fleet-node"] in ("node-1", "node-2")
        assert raw.parse().choices[0].message.content


def test_a_dead_node_is_reported_and_restarted(up):
    old = up.children()["node-1"]
    os.kill(old["pid"], signal.SIGKILL)
    wait_until(lambda: "node-1 died (killed by SIGKILL)" in up.proc.log_text(), 20, "the report")
    assert "restarting node-1" in up.proc.log_text()

    def back() -> bool:
        new = up.children()["node-1"]
        status, _, health = http_json(f"{new['url']}/health")
        return (
            new["pid"] != old["pid"]
            and status == 200
            and all(m["state"] == "loaded" for m in health["models"])
        )

    wait_until(back, 60, "node-1 to come back", on_timeout=up.procs.logs)
    assert up.proc.alive()


def test_sigterm_stops_every_child_and_frees_every_port(procs, tmp_path):
    fleet = UpFleet(procs, tmp_path / "workdir", "--model", "a=sim", nodes=1)
    fleet.wait_ready(180)
    pids = [c["pid"] for c in fleet.children().values()]
    assert all(pid for pid in pids) and len(pids) == 4
    assert fleet.proc.stop(timeout=30, sig=signal.SIGTERM) == 0
    out = fleet.proc.log_text()
    assert out.index("stopping") < out.index("stopped")
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    busy = [p for p in fleet.ports() if not port_is_free(p)]
    assert busy == []
