"""The operator config file: strict schema, defaults, and errors that point at a line.

Every mistake an operator can make in the YAML (unknown key, wrong type, duplicate model
id or alias, bad address, a static node serving an undeclared model) is refused with
``FILE:LINE: field.path: message``, so a bad hot-reload edit is easy to find and fix. The
schema is pydantic (strict types, ``extra="forbid"``); line numbers come from
ruamel.yaml's round-trip loader, which remembers where every key and item was.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from xds_control.weights import WeightPolicy

MiB = 1024 * 1024

# Envoy accepts these in cluster names and metadata values; '%' (Envoy's format
# operator), quotes, whitespace and control characters are refused so the names are safe
# in every Envoy field they land in. A leading letter/digit keeps '__sentinel__' values
# of the body filter out of the model namespace.
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+=-]{0,199}$")
_NAME_HELP = (
    "must start with a letter or digit and contain only letters, digits and . _ : / @ + = -"
    " (at most 200 characters)"
)

LbPolicy = Literal["LEAST_REQUEST", "ROUND_ROBIN", "RANDOM"]


class ConfigError(Exception):
    """A refused config; ``str()`` is one ``FILE[:LINE]: field: message`` line per problem."""

    def __init__(self, source: str, problems: Sequence[tuple[int | None, str, str]]) -> None:
        self.source = source
        self.problems = list(problems)  # (line or None, dotted field path, message)
        super().__init__("\n".join(self._line(p) for p in self.problems))

    def _line(self, problem: tuple[int | None, str, str]) -> str:
        line, field, message = problem
        where = self.source if line is None else f"{self.source}:{line}"
        return f"{where}: {field}: {message}" if field else f"{where}: {message}"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _check_name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(f"{value!r} {_NAME_HELP}")
    return value


def _check_ip(value: str) -> str:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        msg = f"{value!r} is not an IP address (Envoy does not resolve names here)"
        raise ValueError(msg) from None
    return value


class ListenerConfig(_Strict):
    """Envoy's public HTTP listener."""

    address: str = "0.0.0.0"
    port: int = Field(default=8080, ge=1, le=65535)
    # Envoy buffers whole bodies to read `model`; bigger bodies get 413.
    max_request_bytes: int = Field(default=8 * MiB, ge=64 * 1024, le=256 * MiB)

    _ip = field_validator("address")(_check_ip)


class OutlierDetectionConfig(_Strict):
    """Ejection of hosts that fail at the connection level (never for admission 503s)."""

    enabled: bool = True
    consecutive_local_origin_failure: int = Field(default=3, ge=1, le=1000)
    interval_s: float = Field(default=5.0, gt=0, le=3600)
    base_ejection_time_s: float = Field(default=15.0, gt=0, le=3600)
    max_ejection_percent: int = Field(default=50, ge=0, le=100)


class ModelDefaults(_Strict):
    """Per-model settings; ``defaults:`` holds the values a model entry leaves out."""

    lb_policy: LbPolicy = "LEAST_REQUEST"
    retry_on_rejection: bool = True
    max_retries: int | None = Field(default=None, ge=0, le=16)
    idle_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    connect_timeout_s: float = Field(default=1.0, gt=0, le=60)
    outlier_detection: OutlierDetectionConfig = OutlierDetectionConfig()


class ModelConfig(ModelDefaults):
    """One routable model: its cluster is named after ``id``."""

    id: str
    aliases: list[str] = []

    _id = field_validator("id")(_check_name)

    @field_validator("aliases")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        return [_check_name(a) for a in value]

    @property
    def names(self) -> list[str]:
        """Every name a client may put in ``model``: the id, then the aliases."""
        return [self.id, *self.aliases]


class StaticNodeConfig(_Strict):
    """A node without a sidecar: always routed, weighted as idle."""

    name: str
    address: str
    port: int = Field(ge=1, le=65535)
    models: list[str] = Field(min_length=1)

    _name = field_validator("name")(_check_name)
    _ip = field_validator("address")(_check_ip)


class ApiKeyConfig(_Strict):
    """A client key and the models it may use (validated now, enforced by Envoy later)."""

    name: str
    key: SecretStr
    models: list[str] = []

    _name = field_validator("name")(_check_name)

    @field_validator("key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < 8:
            raise ValueError("must be at least 8 characters")
        return value


class _Problems(ValueError):
    """Cross-field problems, each with its own field path, raised from a model validator."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        self.problems = problems
        super().__init__("; ".join(f"{_dotted(loc)}: {msg}" for loc, msg in problems))


class FleetConfig(_Strict):
    """The whole operator file."""

    listener: ListenerConfig = ListenerConfig()
    defaults: ModelDefaults = ModelDefaults()
    models: list[ModelConfig] = Field(min_length=1)
    nodes: list[StaticNodeConfig] = []
    weights: WeightPolicy = WeightPolicy()
    stale_after_s: float = Field(default=3.0, gt=0, le=3600)
    api_keys: list[ApiKeyConfig] = []

    @model_validator(mode="before")
    @classmethod
    def _apply_defaults(cls, data: Any) -> Any:
        """Fill each model entry from ``defaults:`` (when that section is itself valid)."""
        if not isinstance(data, dict):
            return data
        defaults, models = data.get("defaults"), data.get("models")
        if not isinstance(defaults, dict) or not isinstance(models, list) or not defaults:
            return data
        try:
            ModelDefaults.model_validate(defaults)
        except ValidationError:
            return data  # reported once, under `defaults`
        merged = []
        for entry in models:
            if isinstance(entry, dict):
                out = {**defaults, **entry}
                d_od, e_od = defaults.get("outlier_detection"), entry.get("outlier_detection")
                if isinstance(d_od, dict) and isinstance(e_od, dict):
                    out["outlier_detection"] = {**d_od, **e_od}
                entry = out
            merged.append(entry)
        return {**data, "models": merged}

    @model_validator(mode="after")
    def _cross_check(self) -> FleetConfig:
        problems = list(_cross_problems(self.model_dump()))
        if problems:
            raise _Problems(problems)
        return self

    def model_names(self) -> dict[str, str]:
        """Every accepted ``model`` value (ids and aliases) -> the model id."""
        return {name: m.id for m in self.models for name in m.names}

    def model(self, model_id: str) -> ModelConfig:
        """The model with this id (KeyError if none)."""
        for m in self.models:
            if m.id == model_id:
                return m
        raise KeyError(model_id)


def _entries(data: Mapping[str, Any], key: str) -> list[tuple[int, Mapping[str, Any]]]:
    value = data.get(key)
    if not isinstance(value, list):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, Mapping)]


def _strings(value: Any) -> list[tuple[int, str]]:
    if not isinstance(value, list):
        return []
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)]


def _secret(value: Any) -> str | None:
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value if isinstance(value, str) else None


def _cross_problems(data: Mapping[str, Any]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    """Duplicates and dangling model references, on plain data: runs on a valid config
    and also beside field errors, so one pass over a bad file shows every problem."""
    seen: dict[str, str] = {}
    for i, model in _entries(data, "models"):
        names: list[tuple[tuple[str | int, ...], str, str]] = []
        if isinstance(model.get("id"), str):
            names.append((("models", i, "id"), model["id"], f"models[{i}].id"))
        for j, alias in _strings(model.get("aliases")):
            names.append((("models", i, "aliases", j), alias, f"models[{i}].aliases[{j}]"))
        for loc, name, where in names:
            if name in seen:
                yield loc, f"{name!r} is already used by {seen[name]}"
            else:
                seen[name] = where
    node_names: dict[str, int] = {}
    endpoints: dict[tuple[str, int], int] = {}
    for i, node in _entries(data, "nodes"):
        node_name = node.get("name")
        if isinstance(node_name, str):
            if node_name in node_names:
                where = f"nodes[{node_names[node_name]}]"
                yield ("nodes", i, "name"), f"{node_name!r} is already used by {where}"
            node_names.setdefault(node_name, i)
        address, port = node.get("address"), node.get("port")
        if isinstance(address, str) and isinstance(port, int):
            if (address, port) in endpoints:
                yield (
                    ("nodes", i, "port"),
                    f"{address}:{port} is already used by nodes[{endpoints[address, port]}]",
                )
            endpoints.setdefault((address, port), i)
        for j, model_name in _strings(node.get("models")):
            if model_name not in seen:
                yield ("nodes", i, "models", j), f"model {model_name!r} is not declared in `models`"
    key_names: dict[str, int] = {}
    keys: dict[str, int] = {}
    for i, entry in _entries(data, "api_keys"):
        key_name = entry.get("name")
        if isinstance(key_name, str):
            if key_name in key_names:
                yield (
                    ("api_keys", i, "name"),
                    f"{key_name!r} is already used by api_keys[{key_names[key_name]}]",
                )
            key_names.setdefault(key_name, i)
        secret = _secret(entry.get("key"))
        if secret is not None:
            if secret in keys:
                yield ("api_keys", i, "key"), f"same key as api_keys[{keys[secret]}]"
            keys.setdefault(secret, i)
        for j, model_name in _strings(entry.get("models")):
            if model_name != "*" and model_name not in seen:
                yield (
                    ("api_keys", i, "models", j),
                    f"model {model_name!r} is not declared in `models`",
                )


def _dotted(loc: Sequence[str | int]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _line_of(tree: Any, loc: Sequence[str | int]) -> int | None:
    """1-based line of the deepest node of ``loc`` that exists in the YAML tree."""
    line: int | None = None
    node = tree
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(node, dict) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
            elif isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node):
                if lc is not None:
                    line = lc.item(part)[0] + 1
            else:
                break
        except (KeyError, IndexError, TypeError):
            break
        node = node[part]
    if line is None and getattr(tree, "lc", None) is not None:
        line = tree.lc.line + 1
    return line


def _plain(node: Any) -> Any:
    """ruamel's commented containers/scalars -> plain Python values for strict pydantic."""
    if isinstance(node, dict):
        return {_plain(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, bool) or node is None:
        return node
    if isinstance(node, int):
        return int(node)
    if isinstance(node, float):
        return float(node)
    if isinstance(node, str):
        return str(node)
    return node


def _pydantic_message(err: Any) -> str:
    msg = str(err["msg"])
    if err["type"] == "extra_forbidden":
        return "unknown key (not allowed here)"
    if err["type"] == "missing":
        return "required field is missing"
    return msg.removeprefix("Value error, ")


def _problems(
    exc: ValidationError, tree: Any, plain: Mapping[str, Any]
) -> list[tuple[int | None, str, str]]:
    out: list[tuple[int | None, str, str]] = []
    cross_checked = False
    for err in exc.errors():
        loc = tuple(err["loc"])
        inner = (err.get("ctx") or {}).get("error")
        if isinstance(inner, _Problems):
            cross_checked = True
            for sub_loc, msg in inner.problems:
                full = loc + sub_loc
                out.append((_line_of(tree, full), _dotted(full), msg))
            continue
        out.append((_line_of(tree, loc), _dotted(loc), _pydantic_message(err)))
    if not cross_checked:  # field errors stopped the model validator: check the raw data
        out += [(_line_of(tree, loc), _dotted(loc), msg) for loc, msg in _cross_problems(plain)]
    out.sort(key=lambda p: p[0] or 0)
    return out


def parse_config(text: str, source: str = "<string>") -> FleetConfig:
    """Validate YAML text; raises :class:`ConfigError` naming ``source``, line and field."""
    yaml = YAML(typ="rt")
    try:
        tree = yaml.load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = exc.problem or exc.context or "invalid YAML"
        raise ConfigError(source, [(line, "", f"YAML syntax error: {problem}")]) from None
    except YAMLError as exc:
        raise ConfigError(source, [(None, "", f"YAML syntax error: {exc}")]) from None
    if tree is None:
        raise ConfigError(source, [(None, "", "empty config: at least `models:` is required")])
    if not isinstance(tree, dict):
        raise ConfigError(source, [(1, "", "the top level must be a mapping of settings")])
    plain = _plain(tree)
    try:
        return FleetConfig.model_validate(plain)
    except ValidationError as exc:
        raise ConfigError(source, _problems(exc, tree, plain)) from None


def load_config(path: str | os.PathLike[str]) -> FleetConfig:
    """Read and validate the operator file; every failure is a :class:`ConfigError`."""
    source = os.fspath(path)
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(source, [(None, "", f"cannot read config: {reason}")]) from None
    return parse_config(text, source)
