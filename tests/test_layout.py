"""The architecture's rules: app/train_meta -> chatbot -> storage -> memory, vocab; serving code never
imports training; SQL lives in storage/ alone; no module of the packages is over 450 lines."""

import ast
from pathlib import Path

import pytest

from .conftest import ROOT


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
    return roots


def offenders(package: str, forbidden: set[str]) -> dict[str, list[str]]:
    """The package's modules that import any of `forbidden`, with what they import of it."""
    found = {str(path.relative_to(ROOT)): sorted(imported_roots(path) & forbidden) for path in sorted((ROOT / package).rglob("*.py"))}
    return {k: v for k, v in found.items() if v}


@pytest.mark.parametrize("package", ["memory", "vocab"])
def test_memory_and_vocab_never_import_chatbot_gradio_or_storage(package):
    assert offenders(package, {"chatbot", "gradio", "app", "train_meta", "storage", "sqlite3", "sqlite_utils"}) == {}


def test_storage_never_imports_chatbot_gradio_or_training():
    assert offenders("storage", {"chatbot", "gradio", "app", "train_meta", "training"}) == {}


@pytest.mark.parametrize("package", ["chatbot", "memory", "storage", "vocab"])
def test_no_module_is_over_450_lines(package):
    lines = {str(path.relative_to(ROOT)): len(path.read_text(encoding="utf-8").splitlines()) for path in sorted((ROOT / package).rglob("*.py"))}
    assert {k: n for k, n in lines.items() if n > 450} == {}


def test_chatbot_never_imports_the_app():
    for path in sorted((ROOT / "chatbot").rglob("*.py")):
        assert not imported_roots(path) & {"gradio", "app", "train_meta"}, path


# The app and everything it runs; training/, train_meta.py and bench/ may import them, never the reverse.
SERVING = ["app.py", "chatbot", "memory", "storage", "ui", "vocab"]


@pytest.mark.parametrize("part", SERVING)
def test_serving_code_never_imports_training(part):
    root = ROOT / part
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files
    assert [str(path.relative_to(ROOT)) for path in files if imported_roots(path) & {"training", "train_meta"}] == []
