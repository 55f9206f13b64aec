"""The memory interface, its losses and switches, batching, checkpoints and train_meta.py."""

from __future__ import annotations

import csv
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from memory.config import InterfaceConfig, MetaLossConfig, NeuralMemoryConfig
from memory.interface import PAD, QUESTION, STATEMENT, EpisodeBatch, MemoryModel, load_checkpoint, save_checkpoint
from training.batching import StepBudgetSampler

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
HC, H = 48, 64  # feature and embedding widths of the random batches


def random_batch(b: int = 3, s: int = 6, t: int = 5, c: int = 7, seed: int = 0) -> EpisodeBatch:
    g = torch.Generator().manual_seed(seed)
    mask = torch.ones(b, s, t, dtype=torch.bool)
    mask[:, :, -1] = False
    kind = torch.full((b, s), STATEMENT)
    kind[:, 2] = QUESTION
    kind[:, -1] = QUESTION
    kind[0, -2:] = PAD  # a shorter episode
    answer = torch.where(kind == QUESTION, torch.randint(0, c, (b, s), generator=g), torch.full((b, s), -100))
    vocab = torch.randn(10, H, generator=g)
    tok_u = torch.randint(0, 10, (b, s, t), generator=g)
    support = torch.zeros(b, s, s, dtype=torch.bool)
    support[:, 2, 0] = True  # the first question is answered by the first statement
    support[1:, -1, 3] = True
    pointer = torch.zeros(b, s, t, dtype=torch.bool)
    pointer[:, 0, 2:4] = True  # the first statement's value is spelled by its tokens 2 and 3
    return EpisodeBatch(
        torch.randn(b, s, t, HC, generator=g), vocab[tok_u] * mask.unsqueeze(-1), mask, kind, answer,
        torch.randn(c, H, generator=g), vocab, tok_u, support, pointer,
    )


def model(**switches) -> MemoryModel:
    torch.manual_seed(0)
    mem = {k: v for k, v in switches.items() if k in NeuralMemoryConfig.__dataclass_fields__}
    itf = {k: v for k, v in switches.items() if k in InterfaceConfig.__dataclass_fields__}
    return MemoryModel(
        NeuralMemoryConfig(heads=4, key_dim=32, hidden_dim=32, **mem), InterfaceConfig(model_dim=32, **itf), HC, H
    )


def test_forward_gives_every_loss_and_gradients_reach_the_interface():
    m = model()
    out = m(random_batch(), MetaLossConfig(match=1.0, pointer=1.0))
    assert {"answer", "meta", "recall", "vicreg", "match", "pointer"} <= out.keys() and torch.isfinite(out["loss"])
    assert out["logits"].shape == (5, 7)  # 2 questions in each of 3 episodes, one padded away
    out["loss"].backward()
    for p in (m.interface.tok.weight, m.interface.write_key.weight, m.interface.read_keys[0].weight,
              m.interface.beta.weight, m.memory.init_w[0], m.memory.log_step):
        assert p.grad is not None and p.grad.abs().sum() > 0


def test_match_loss_pulls_the_read_key_to_its_supporting_statement():
    m = model()
    batch = random_batch()
    losses = MetaLossConfig(answer=0.0, meta=0.0, vicreg=0.0, recall=0.0, match=1.0)
    optim = torch.optim.Adam(m.parameters(), lr=0.01)
    first = None
    for _ in range(30):
        out = m(batch, losses)
        first = first if first is not None else out["match"].item()
        optim.zero_grad()
        out["loss"].backward()
        optim.step()
    assert out["match"].item() < 0.2 * first
    # the question's read key now ranks its support first among the earlier statements
    with torch.no_grad():
        state = m.reset(3)
        keys = []
        for t in range(3):
            state, step = m.step(state, batch.feats[:, t], batch.emb[:, t], batch.mask[:, t], batch.kind[:, t])
            keys.append(step)
        sim = m.key_similarity(keys[2].k_r[:, None], torch.stack([keys[0].k_w, keys[1].k_w], 1))[:, 0]
    assert (sim.argmax(-1) == 0).all()


def test_pointer_loss_puts_the_value_on_the_tokens_that_spell_it():
    m = model()
    batch = random_batch()
    losses = MetaLossConfig(answer=0.0, meta=0.0, vicreg=0.0, recall=0.0, pointer=1.0)
    optim = torch.optim.Adam(m.parameters(), lr=0.01)
    for _ in range(30):
        out = m(batch, losses)
        optim.zero_grad()
        out["loss"].backward()
        optim.step()
    with torch.no_grad():
        _, step = m.step(m.reset(3), batch.feats[:, 0], batch.emb[:, 0], batch.mask[:, 0], batch.kind[:, 0])
    assert (step.value_att[:, 2:4].sum(-1) > 0.9).all()


def test_a_zero_weight_switches_a_loss_off():
    out = model()(random_batch(), MetaLossConfig(answer=1.0, meta=0.0, vicreg=0.0, recall=0.0))
    assert "meta" not in out and "vicreg" not in out and "recall" not in out
    torch.testing.assert_close(out["loss"], out["answer"])


@pytest.mark.parametrize(
    "switches",
    [
        {"rule": "p"},
        {"enabled": False},
        {"read_hops": 3},
        {"recurrent": False},
        {"value_copy": False},
        {"answer_attention": True},
        {"token_embeddings": True},
        {"value_residual": False, "output_mlp": False},
        {"learned_beta": False, "fixed_beta": 0.5},
        {"center_decoding": True, "output_mlp": False},
        {"learn_init": False, "learn_step": False, "layers": 1},
    ],
)
def test_every_switch_trains(switches):
    m = model(**switches)
    out = m(random_batch(), MetaLossConfig())
    out["loss"].backward()
    assert torch.isfinite(out["loss"])
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in m.interface.parameters())


def test_questions_do_not_write_and_padding_keeps_state():
    m = model()
    batch = random_batch()
    state = m.reset(3)
    kind = torch.tensor([QUESTION, PAD, STATEMENT])
    before = [w.clone() for w in m.memory.fast.weights]
    new_state, out = m.step(state, batch.feats[:, 0], batch.emb[:, 0], batch.mask[:, 0], kind)
    after = m.memory.fast.weights
    assert torch.equal(after[0][0], before[0][0]) and torch.equal(after[0][1], before[0][1])
    assert not torch.equal(after[0][2], before[0][2])
    assert torch.equal(new_state[1], state[1]) and not torch.equal(new_state[2], state[2])
    assert out.beta[0].abs().sum() == 0


def test_checkpoint_round_trip(tmp_path):
    m = model(rule="p", read_hops=2).eval()
    batch = random_batch()
    path = tmp_path / "m.pt"
    save_checkpoint(path, m, candidates=["a", "b"], feature_layer=3, cache_tag="x", record={"steps": 1})
    again, meta = load_checkpoint(path)
    assert meta["candidates"] == ["a", "b"] and meta["feature_layer"] == 3 and meta["memory"]["rule"] == "p"
    losses = MetaLossConfig()
    torch.testing.assert_close(again(batch, losses)["logits"], m(batch, losses)["logits"])


def test_step_budget_sampler_covers_every_episode_once_within_budget():
    lengths = [3, 50, 7, 7, 120, 9, 2, 33, 8, 8, 5]
    sampler = StepBudgetSampler(lengths, budget=100, max_batch=4, seed=0)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for b in batches:
            assert len(b) <= 4
            assert len(b) == 1 or max(lengths[i] for i in b) * len(b) <= 100


@pytest.fixture(scope="module")
def shared_features(tmp_path_factory) -> Path:
    """One feature cache for this module's runs: only the first computes features."""
    return tmp_path_factory.mktemp("features")


@pytest.fixture
def tiny_meta_config(tmp_path, shared_features) -> Path:
    if not (DATA / "babi").is_dir():
        pytest.skip("../shared/data/babi is absent")
    text = (ROOT / "configs" / "meta_tiny.yaml").read_text()
    text = text.replace("cache_dir: data/models", f"cache_dir: {ROOT / 'data' / 'models'}")
    text = text.replace("data_dir: ../shared/data", f"data_dir: {DATA}")
    text = text.replace("feature_cache: data/features", f"feature_cache: {shared_features}")
    text = text.replace("output_dir: data/runs/meta-tiny", f"output_dir: {tmp_path / 'run'}")
    text = text.replace("export_path: data/runs/meta-tiny/mnm.pt", f"export_path: {tmp_path / 'mnm.pt'}")
    assert str(tmp_path) in text and "teach_recall_episodes" not in text
    text = text.replace("meta_train:\n", "meta_train:\n  teach_recall_episodes: 8\n")
    path = tmp_path / "meta_tiny.yaml"
    path.write_text(text)
    return path


def run(args: list[str], cwd: Path, env: dict | None = None) -> str:
    out = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env={**os.environ, **(env or {})}, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def metrics(tmp_path: Path) -> list[dict]:
    with (tmp_path / "run" / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def test_train_meta_runs_checkpoints_and_resumes(tiny_meta_config, tmp_path):
    out = run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(tiny_meta_config)], tmp_path)
    record = json.loads(out.strip().splitlines()[-1])
    assert record["steps"] == 4 and record["processes"] == 1
    assert [r["step"] for r in metrics(tmp_path)] == ["1", "2", "3", "4"]
    assert (tmp_path / "mnm.pt").is_file()
    assert {p.name for p in (tmp_path / "run" / "checkpoints").iterdir()} == {"step-2", "step-4"}
    model_, meta = load_checkpoint(tmp_path / "mnm.pt")
    assert meta["record"]["steps"] == 4 and "hallway" in meta["candidates"]

    out = run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(tiny_meta_config), "--steps", "6"], tmp_path)
    assert "resumed from" in out and json.loads(out.strip().splitlines()[-1])["steps"] == 6
    assert [r["step"] for r in metrics(tmp_path)] == ["1", "2", "3", "4", "5", "6"]


def test_train_meta_is_data_parallel_over_two_cpu_processes(tiny_meta_config, tmp_path):
    accelerate = Path(sys.executable).parent / "accelerate"
    with socket.socket() as s:  # a free rendezvous port: the default 29500 may be held by another run
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = run(
        [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no",
         "--main_process_ip", "127.0.0.1", "--main_process_port", str(port),
         "--dynamo_backend", "no", str(ROOT / "train_meta.py"), "--config", str(tiny_meta_config)],
        tmp_path, env={"OMP_NUM_THREADS": "1"},
    )
    record = json.loads(out.strip().splitlines()[-1])
    assert record["processes"] == 2 and record["steps"] == 4
    assert record["episodes_seen"] > 4 * 8  # both processes' episodes counted


def test_adapter_stage_trains_exports_and_the_controller_merges_it(tiny_meta_config, tmp_path):
    text = tiny_meta_config.read_text().replace("meta_train:\n", "meta_train:\n  stage: adapter\n  adapter:\n"
        "    from_layer: 1\n    dialogues: 3\n    max_facts: 4\n    eval_dialogues: 1\n    max_new_tokens: 4\n"
        f"    replies_cache: {tmp_path / 'replies.json'}\n")
    text = text.replace(f"export_path: {tmp_path / 'mnm.pt'}", f"export_path: {tmp_path / 'lora.pt'}")
    config = tmp_path / "adapter.yaml"
    config.write_text(text)
    out = run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(config), "--steps", "2"], tmp_path)
    record = json.loads(out.strip().splitlines()[-1])
    assert record["stage"] == "adapter" and record["steps"] == 2
    assert set(record["validation"]) >= {"answer_accuracy", "not_told_rate", "general_same_start"}
    saved = torch.load(tmp_path / "lora.pt", weights_only=True)
    assert saved["config"]["layers_to_transform"] == [1]  # layer 0, under the memory's features, untouched
    assert all(v.dtype == torch.float16 for v in saved["state_dict"].values())

    from chatbot import Controller
    from memory.features import hidden_states
    from training.config import load_training_config

    cfg = load_training_config(config).model
    plain = Controller.from_config(cfg)
    cfg.adapter = str(tmp_path / "lora.pt")
    adapted = Controller.from_config(cfg)
    ids = plain.chat_ids([{"role": "user", "content": "Where does Oriel live?"}])
    with torch.no_grad():
        assert not torch.allclose(plain.model(ids).logits, adapted.model(ids).logits)
        assert torch.equal(hidden_states(plain, ["Oriel lives here."], 1)[0], hidden_states(adapted, ["Oriel lives here."], 1)[0])
    assert type(adapted.model).__name__ == "LlamaForCausalLM"  # merged: a plain model again
    cfg.adapter = str(tmp_path / "missing.pt")
    with pytest.raises(Exception, match="does not exist"):
        Controller.from_config(cfg)

    # going on from the exported weights: with no learning rate they come out as they went in
    again = tmp_path / "again.yaml"
    again.write_text(text.replace(f"export_path: {tmp_path / 'lora.pt'}", f"export_path: {tmp_path / 'lora2.pt'}")
                     .replace("  adapter:\n", f"  cpu_mixed_precision: bf16\n  adapter:\n    init: {tmp_path / 'lora.pt'}\n")
                     .replace("lr: 0.003", "lr: 0.0"))
    run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(again), "--steps", "1", "--fresh"], tmp_path)
    resumed = torch.load(tmp_path / "lora2.pt", weights_only=True)["state_dict"]
    assert resumed.keys() == saved["state_dict"].keys()
    assert all(torch.equal(resumed[k], saved["state_dict"][k]) for k in resumed)
    other = tmp_path / "other.yaml"
    other.write_text(again.read_text().replace("  adapter:\n", "  adapter:\n    rank: 4\n"))
    failed = subprocess.run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(other), "--steps", "1", "--fresh"],
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert failed.returncode != 0 and "differ from this config's" in failed.stderr

    # the first run distilled the base model's replies; its saved state must still load
    out = run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(config), "--steps", "3"], tmp_path)
    assert "resumed from" in out and json.loads(out.strip().splitlines()[-1])["steps"] == 3


def test_answerable_stage_fits_a_probe_the_controller_loads(tiny_meta_config, tmp_path):
    text = tiny_meta_config.read_text().replace("meta_train:\n", "meta_train:\n  stage: answerable\n  answerable:\n"
        "    dialogues: 4\n    conversations: 1\n    val_dialogues: 3\n    val_conversations: 1\n"
        "    layers: \"1,2\"\n    l2: \"0.1,1.0\"\n")
    text = text.replace(f"export_path: {tmp_path / 'mnm.pt'}", f"export_path: {tmp_path / 'probe.pt'}")
    config = tmp_path / "probe.yaml"
    config.write_text(text)
    out = run([sys.executable, str(ROOT / "train_meta.py"), "--config", str(config)], tmp_path)
    record = json.loads(out.strip().splitlines()[-1])
    assert record["stage"] == "answerable" and record["layer"] in (1, 2) and record["l2"] in (0.1, 1.0)
    assert 0.0 <= record["val_auroc"] <= 1.0 and record["train_prompts"] > record["val_prompts"] > 0

    from chatbot import Controller
    from training.config import load_training_config

    cfg = load_training_config(config).model
    cfg.not_told_probe = str(tmp_path / "probe.pt")
    probe = Controller.from_config(cfg).probe
    assert probe.layer == record["layer"] and probe.threshold == pytest.approx(record["threshold"], abs=1e-4)
