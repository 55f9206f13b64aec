"""The architecture's rules about imports: app/train_meta -> chatbot -> memory, vocab; serving code never imports training."""

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


@pytest.mark.parametrize("package", ["memory", "vocab"])
def test_memory_and_vocab_never_import_chatbot_or_gradio(package):
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & {"chatbot", "gradio", "app", "train_meta"})
        for path in sorted((ROOT / package).rglob("*.py"))
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_chatbot_never_imports_the_app():
    for path in sorted((ROOT / "chatbot").rglob("*.py")):
        assert not imported_roots(path) & {"gradio", "app", "train_meta"}, path


# The app and everything it runs; training/, train_meta.py and bench/ may import them, never the reverse.
SERVING = ["app.py", "chatbot", "memory", "vocab"] + [d for d in ("storage", "ui") if (ROOT / d).is_dir()]


@pytest.mark.parametrize("part", SERVING)
def test_serving_code_never_imports_training(part):
    root = ROOT / part
    files = [root] if root.is_file() else sorted(root.rglob("*.py"))
    assert files
    assert [str(path.relative_to(ROOT)) for path in files if imported_roots(path) & {"training", "train_meta"}] == []
