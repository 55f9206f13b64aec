"""Shared fixtures: the tiny random model (fast) and the real SmolLM2 model (marked real_model)."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client

from chatbot import Agent, Controller, load_config
from storage import Store

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "configs" / "tiny.yaml"
DEFAULT = ROOT / "configs" / "default.yaml"
ARTIFACTS = ROOT / "test-artifacts"  # screenshots from the browser tests
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="session")
def tiny_controller() -> Controller:
    return Controller.from_config(load_config(TINY).model)


@pytest.fixture(scope="session")
def real_controller() -> Controller:
    return Controller.from_config(load_config(DEFAULT).model)


def make_agent(tmp_path: Path, controller: Controller, db: str = "chat.db", **sections) -> Agent:
    """An agent on the tiny config with `section__key=value` overrides; the vocabulary is off,
    since these agents watch the memories (the vocabulary has tests of its own)."""
    cfg = load_config(TINY)
    cfg.vocab.enabled = False
    for dotted, value in sections.items():
        section, key = dotted.split("__")
        setattr(getattr(cfg, section), key, value)
    return Agent(cfg, controller, Store(tmp_path / db))


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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class App:
    """app.py running in a subprocess, stopped on exit."""

    def __init__(self, config, db, tmp_path):
        self.port = free_port()
        self.log = open(tmp_path / f"app-{self.port}.log", "w")
        self.proc = subprocess.Popen(
            [sys.executable, "app.py", "--config", str(config), "--db", str(db), "--port", str(self.port)],
            cwd=ROOT,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}/"

    def wait(self, timeout=240) -> Client:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"app exited with {self.proc.returncode}: {open(self.log.name).read()[-2000:]}")
            try:
                return Client(self.url, verbose=False)
            except Exception:
                time.sleep(1)
        raise TimeoutError(open(self.log.name).read()[-2000:])

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.log.close()


@pytest.fixture
def page(tmp_path):
    """A page of a real headless Debian Chromium."""
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is not installed; `make test` installs it")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        context = browser.new_context(viewport={"width": 1100, "height": 900})
        yield context.new_page()
        browser.close()


def open_chat(page, app: App, name: str):
    """Open the app's Chat tab in `page` as user `name`; returns the message box."""
    ARTIFACTS.mkdir(exist_ok=True)
    page.goto(app.url, wait_until="networkidle")
    page.get_by_label("Your name").fill(name)
    page.get_by_label("Your name").press("Enter")
    return page.get_by_role("textbox", name="Message")


def wait_for_the_turn_to_end(page, timeout: float = 120_000) -> None:
    """The message box is locked while a turn runs (see app.respond)."""
    page.wait_for_function(
        "!document.querySelector('textarea[placeholder^=\"Type a message\"]').disabled", timeout=timeout
    )
