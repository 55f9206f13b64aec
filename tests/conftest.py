"""Shared fixtures: the tiny random model (fast) and the real SmolLM2 model (marked real_model)."""

from __future__ import annotations

from pathlib import Path

import pytest

from chatbot import Agent, Controller, load_config
from memory.store import Store

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"
DEFAULT = ROOT / "configs" / "default.yaml"


@pytest.fixture(scope="session")
def tiny_controller() -> Controller:
    return Controller.from_config(load_config(TINY).model)


@pytest.fixture(scope="session")
def real_controller() -> Controller:
    return Controller.from_config(load_config(DEFAULT).model)


@pytest.fixture
def tiny_agent(tmp_path, tiny_controller) -> Agent:
    cfg = load_config(TINY)
    agent = Agent(cfg, tiny_controller, Store(tmp_path / "chat.db"))
    yield agent
    agent.close()


@pytest.fixture
def config_copy(tmp_path):
    """Write a YAML config into tmp_path and return its path."""

    def write(text: str, name: str = "c.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write


@pytest.fixture
def tiny_config_file(tmp_path) -> Path:
    """tiny.yaml with cache_dir made absolute, so subprocesses may run from any folder."""
    cfg = TINY.read_text(encoding="utf-8").replace("cache_dir: data/models", f"cache_dir: {ROOT / 'data' / 'models'}")
    path = tmp_path / "tiny.yaml"
    path.write_text(cfg, encoding="utf-8")
    return path
