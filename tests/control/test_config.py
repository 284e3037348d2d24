"""Operator config validation: what is accepted, and the exact errors for what is not."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from xds_control.config import ConfigError, load_config, parse_config

REPO = Path(__file__).resolve().parents[2]


def test_minimal_file_gets_documented_defaults() -> None:
    cfg = parse_config("models: [{id: alpha}]")
    (alpha,) = cfg.models
    assert (cfg.listener.address, cfg.listener.port) == ("0.0.0.0", 8080)
    assert cfg.listener.max_request_bytes == 8 * 1024 * 1024
    assert alpha.lb_policy == "LEAST_REQUEST"
    assert alpha.retry_on_rejection is True
    assert alpha.max_retries is None
    assert (alpha.idle_timeout_s, alpha.connect_timeout_s) == (300.0, 1.0)
    assert alpha.outlier_detection.enabled
    assert cfg.stale_after_s == 3.0
    assert cfg.nodes == [] and cfg.api_keys == []


def test_defaults_fill_what_a_model_omits() -> None:
    cfg = parse_config(
        """
defaults:
  lb_policy: RANDOM
  idle_timeout_s: 60
  outlier_detection: {interval_s: 2, max_ejection_percent: 20}
models:
  - id: alpha
  - id: beta
    lb_policy: ROUND_ROBIN
    outlier_detection: {max_ejection_percent: 30}
"""
    )
    alpha, beta = cfg.models
    assert (alpha.lb_policy, alpha.idle_timeout_s) == ("RANDOM", 60.0)
    assert (beta.lb_policy, beta.idle_timeout_s) == ("ROUND_ROBIN", 60.0)
    assert (beta.outlier_detection.interval_s, beta.outlier_detection.max_ejection_percent) == (
        2.0,
        30,
    )


def test_model_names_resolve_aliases() -> None:
    cfg = parse_config("models: [{id: meta-llama/Llama-3.1-8B, aliases: [llama, 'l:8b']}]")
    assert cfg.model_names() == {
        "meta-llama/Llama-3.1-8B": "meta-llama/Llama-3.1-8B",
        "llama": "meta-llama/Llama-3.1-8B",
        "l:8b": "meta-llama/Llama-3.1-8B",
    }


def test_shipped_example_is_valid() -> None:
    cfg = load_config(REPO / "examples" / "fleet.yaml")
    assert [m.id for m in cfg.models] == ["alpha", "beta"]


BAD = [
    # (yaml, expected error line) — the message names the file, the line and the field
    ("models: [{id: alpha}]\nbogus: 1\n", "f.yaml:2: bogus: unknown key (not allowed here)"),
    (
        "models:\n  - id: alpha\n  - id: beta\n    lb_policy: FASTEST\n",
        "f.yaml:4: models[1].lb_policy: Input should be 'LEAST_REQUEST', 'ROUND_ROBIN' or 'RANDOM'",
    ),
    (
        "listener:\n  port: '8080'\nmodels: [{id: alpha}]\n",
        "f.yaml:2: listener.port: Input should be a valid integer",
    ),
    (
        "listener:\n  port: 70000\nmodels: [{id: alpha}]\n",
        "f.yaml:2: listener.port: Input should be less than or equal to 65535",
    ),
    (
        "listener: {address: my-host}\nmodels: [{id: alpha}]\n",
        "f.yaml:1: listener.address: 'my-host' is not an IP address",
    ),
    ("listener: {}\n", "f.yaml:1: models: required field is missing"),
    ("models: []\n", "f.yaml:1: models: List should have at least 1 item"),
    (
        "models:\n  - id: alpha\n    retry_on_rejection: maybe\n",
        "f.yaml:3: models[0].retry_on_rejection: Input should be a valid boolean",
    ),
    (
        "models:\n  - id: 'bad model'\n",
        "f.yaml:2: models[0].id: 'bad model' must start with a letter or digit",
    ),
    (
        "models:\n  - id: __missing__\n",
        "f.yaml:2: models[0].id: '__missing__' must start with a letter or digit",
    ),
    (
        "models:\n  - id: alpha\n  - id: alpha\n",
        "f.yaml:3: models[1].id: 'alpha' is already used by models[0].id",
    ),
    (
        "models:\n  - id: alpha\n    aliases: [a]\n"
        "  - id: beta\n    aliases:\n      - b\n      - a\n",
        "f.yaml:7: models[1].aliases[1]: 'a' is already used by models[0].aliases[0]",
    ),
    (
        "models: [{id: alpha}]\nnodes:\n  - name: n1\n    address: 10.0.0.1\n    port: 8101\n"
        "    models:\n      - gamma\n",
        "f.yaml:7: nodes[0].models[0]: model 'gamma' is not declared in `models`",
    ),
    (
        "models: [{id: alpha}]\nnodes:\n"
        "  - {name: n1, address: 10.0.0.1, port: 1, models: [alpha]}\n"
        "  - {name: n1, address: 10.0.0.2, port: 1, models: [alpha]}\n",
        "f.yaml:4: nodes[1].name: 'n1' is already used by nodes[0]",
    ),
    (
        "models: [{id: alpha}]\nnodes:\n"
        "  - {name: n1, address: localhost, port: 1, models: [alpha]}\n",
        "f.yaml:3: nodes[0].address: 'localhost' is not an IP address",
    ),
    (
        "models: [{id: alpha}]\nweights:\n  max_weight: 10\n  queued_weight: 20\n",
        "f.yaml:2: weights: queued_weight (20) must not exceed max_weight (10)",
    ),
    (
        "models: [{id: alpha}]\nstale_after_s: 0\n",
        "f.yaml:2: stale_after_s: Input should be greater than 0",
    ),
    (
        "models: [{id: alpha}]\napi_keys:\n  - {name: a, key: short, models: [alpha]}\n",
        "f.yaml:3: api_keys[0].key: must be at least 8 characters",
    ),
    (
        "models: [{id: alpha}]\napi_keys:\n  - {name: a, key: sk-123456789, models: [beta]}\n",
        "f.yaml:3: api_keys[0].models[0]: model 'beta' is not declared in `models`",
    ),
    (
        "defaults:\n  lb_policy: FASTEST\nmodels: [{id: alpha}]\n",
        "f.yaml:2: defaults.lb_policy: Input should be",
    ),
    ("models: [{id: alpha}\n", "f.yaml:2: YAML syntax error"),
    ("models: [{id: a}]\nmodels: [{id: b}]\n", "f.yaml:2: YAML syntax error: found duplicate key"),
    ("- alpha\n", "f.yaml:1: the top level must be a mapping of settings"),
    ("# nothing\n", "f.yaml: empty config"),
]


@pytest.mark.parametrize(("text", "expected"), BAD)
def test_bad_config_error_names_file_line_and_field(text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    assert str(info.value).splitlines()[0].startswith(expected), str(info.value)


def test_every_problem_is_reported_once() -> None:
    text = "listener: {port: 0}\nmodels:\n  - id: alpha\n    lb_policy: X\nextra: 1\n"
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    assert [(p[0], p[1]) for p in info.value.problems] == [
        (1, "listener.port"),
        (4, "models[0].lb_policy"),
        (5, "extra"),
    ]


def test_duplicates_are_reported_beside_field_errors() -> None:
    text = (
        "models:\n  - id: alpha\n    lb_policy: X\n  - id: alpha\n"
        "nodes:\n  - {name: n, address: [1], port: {}, models: [alpha, zeta, 5]}\n"
    )
    with pytest.raises(ConfigError) as info:
        parse_config(text, "f.yaml")
    assert [(p[0], p[1]) for p in info.value.problems] == [
        (3, "models[0].lb_policy"),
        (4, "models[1].id"),
        (6, "nodes[0].address"),
        (6, "nodes[0].port"),
        (6, "nodes[0].models[2]"),  # per line: field errors, then cross-field ones
        (6, "nodes[0].models[1]"),
    ]
    assert "'alpha' is already used by models[0].id" in str(info.value)
    assert "model 'zeta' is not declared" in str(info.value)


def test_bad_defaults_are_reported_once_under_defaults() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("defaults: {idle_timeout_s: -1}\nmodels: [{id: a}, {id: b}]\n", "f.yaml")
    assert [p[1] for p in info.value.problems] == ["defaults.idle_timeout_s"]


def test_api_keys_never_appear_in_reprs() -> None:
    cfg = parse_config(
        "models: [{id: a}]\napi_keys: [{name: k, key: sk-very-secret, models: ['*']}]"
    )
    assert "sk-very-secret" not in repr(cfg) and "sk-very-secret" not in str(cfg.api_keys)
    assert cfg.api_keys[0].key.get_secret_value() == "sk-very-secret"


def test_equal_files_give_equal_configs() -> None:
    # the control plane skips a reload that changes nothing
    text = "models: [{id: a, aliases: [x]}]\napi_keys: [{name: k, key: sk-12345678}]\n"
    assert parse_config(text) == parse_config(text)
    assert parse_config(text) != parse_config(text.replace("[x]", "[y]"))


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.yaml: cannot read config"):
        load_config(tmp_path / "missing.yaml")
    binary = tmp_path / "bin.yaml"
    binary.write_bytes(b"\xff\xfe\x00models")
    with pytest.raises(ConfigError, match=r"bin\.yaml: cannot read config"):
        load_config(binary)
    if os.geteuid() != 0:
        locked = tmp_path / "locked.yaml"
        locked.write_text("models: [{id: a}]")
        locked.chmod(0)
        with pytest.raises(ConfigError, match="Permission denied"):
            load_config(locked)
