"""Meta-train the memory interface and neural memory on bAbI (and teach-and-recall).

    python train_meta.py --config configs/meta_babi.yaml
    accelerate launch --cpu --num_processes 2 train_meta.py --config configs/meta_babi.yaml
    accelerate launch train_meta.py --config configs/meta_babi.yaml      # one or many GPUs

The controller LM stays frozen: its hidden states of every distinct sentence are
computed once into `meta_train.feature_cache` (the main process does it; the others
wait), so training itself never runs the LM. Each episode is a story: statements
are written to the memory in order, questions are answered by reading it; the
losses (answer CE, MNM meta loss, VICReg on keys, recall) are switched by their
weights in `meta_train.losses`.

Resume: a run restarts from the newest state under `output_dir/checkpoints/` by
itself (accelerate's save_state: model, optimizer, scheduler, RNG, step). Metrics
go to `output_dir/metrics.csv`; the trained weights to `export_path`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import random
import time
from pathlib import Path

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from chatbot.config import Config, load_config
from chatbot.controller import model_tag
from memory.batching import Candidates, StepBudgetSampler, episode_texts, make_batch, statement_words
from memory.episodes import Episode, TeachRecall, babi_file, load_babi, parse_tasks
from memory.features import FeatureCache
from memory.interface import MemoryModel, save_checkpoint

STEP_BUDGET = 2048  # padded episode-steps per micro-batch: bounds the fast weights kept for backprop


def training_episodes(cfg: Config) -> list[Episode]:
    """bAbI train stories of the configured tasks, plus generated teach-and-recall dialogues."""
    mt = cfg.meta_train
    episodes: list[Episode] = []
    for task in parse_tasks(mt.babi_tasks) if mt.babi_tasks else []:
        episodes += load_babi(babi_file(mt.data_dir, task, "train", mt.babi_set), task)
    if mt.teach_recall_episodes:
        gen = TeachRecall("train", Path(mt.data_dir) / "names" / "names.txt")
        rng = random.Random(mt.seed)
        for _ in range(mt.teach_recall_episodes):
            n = rng.randint(2, mt.teach_recall_facts)
            episodes.append(gen.episode(rng, n, corrections=rng.randint(0, n // 3)))
    return episodes


def answer_phrases(episodes: list[Episode]) -> list[str]:
    return sorted({s.answer for e in episodes for s in e.steps if s.is_question})


def decoding_phrases(cfg: Config, episodes: list[Episode]) -> list[str]:
    """Every phrase a read may be decoded to: the answers, and with word distractors every statement word."""
    phrases = answer_phrases(episodes)
    return phrases + (statement_words(episodes) if cfg.meta_train.word_distractors else [])


def prepare_features(cfg: Config, episodes: list[Episode], phrases: list[str], *, progress: bool) -> FeatureCache:
    """The feature cache holding every sentence and answer of `episodes`; computes what is missing."""
    cache = FeatureCache(cfg.meta_train.feature_cache, model_tag(cfg.model), cfg.interface.feature_layer)
    texts = episode_texts(episodes)
    if any(cache.missing(texts, phrases)):
        from chatbot.controller import Controller

        controller = Controller.from_config(cfg.model)
        cache.ensure(controller, texts, phrases, progress=progress)
    return cache


class Progress:
    """Optimizer steps done, saved with accelerate's state so a resumed run continues the count."""

    def __init__(self) -> None:
        self.step = 0
        self.micro = 0
        self.seconds = 0.0
        self.episodes = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "micro": self.micro, "seconds": self.seconds, "episodes": self.episodes}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.micro = int(state["step"]), int(state["micro"])
        self.seconds, self.episodes = float(state["seconds"]), int(state["episodes"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML config (model, neural_memory, interface, meta_train)")
    parser.add_argument("--steps", type=int, help="override meta_train.steps")
    parser.add_argument("--fresh", action="store_true", help="ignore saved state in output_dir and start over")
    args = parser.parse_args(argv)
    cfg = load_config(args.config)
    mt = cfg.meta_train
    if args.steps is not None:
        mt.steps = args.steps
    torch.set_num_threads(mt.threads)

    accelerator = Accelerator(
        # on a machine without a GPU, several launched processes form a CPU (gloo) group
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=mt.grad_accum,
        mixed_precision=mt.mixed_precision if torch.cuda.is_available() else "no",
        # the schedule counts optimizer steps, not per-process batches
        step_scheduler_with_optimizer=False,
        # with the memory or the match loss off some parameters get no gradient, which DDP must be told
        kwargs_handlers=[
            DistributedDataParallelKwargs(find_unused_parameters=not cfg.neural_memory.enabled or not mt.losses.match)
        ],
    )
    set_seed(mt.seed)
    out_dir = Path(mt.output_dir)
    episodes = training_episodes(cfg)
    phrases = answer_phrases(episodes)
    with accelerator.main_process_first():
        cache = prepare_features(cfg, episodes, decoding_phrases(cfg, episodes), progress=accelerator.is_main_process)
    candidates = Candidates(cache, phrases)
    feature_dim = cache.feats[0].shape[-1]
    value_dim = candidates.vectors.shape[-1]

    model = MemoryModel(cfg.neural_memory, cfg.interface, feature_dim, value_dim)
    optimizer = torch.optim.AdamW(
        [p for p in model.parameters() if p.requires_grad], lr=mt.lr, weight_decay=mt.weight_decay
    )

    def schedule(step: int) -> float:
        if step < mt.warmup_steps:
            return (step + 1) / mt.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - mt.warmup_steps) / max(1, mt.steps - mt.warmup_steps))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    sampler = StepBudgetSampler([len(e.steps) for e in episodes], STEP_BUDGET, mt.batch_size, mt.seed)
    loader = DataLoader(
        episodes,
        batch_sampler=sampler,
        collate_fn=lambda eps: make_batch(eps, cache, candidates, word_distractors=mt.word_distractors),
    )
    model, optimizer, loader, scheduler = accelerator.prepare(model, optimizer, loader, scheduler)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    ckpt_root = out_dir / "checkpoints"
    saved = sorted(ckpt_root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if ckpt_root.is_dir() else []
    if saved and not args.fresh:
        accelerator.load_state(str(saved[-1]))
        accelerator.print(f"resumed from {saved[-1]} at step {progress.step}")
    metrics_path = out_dir / "metrics.csv"
    fields = ["step", "epoch", "lr", "loss", "answer", "meta", "recall", "vicreg", "match", "accuracy", "episodes_per_s", "seconds"]
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not metrics_path.is_file() or args.fresh or not saved:
            with metrics_path.open("w", newline="") as f:
                csv.writer(f).writerow(fields)

    bar = tqdm(total=mt.steps, initial=progress.step, disable=not accelerator.is_main_process, desc="meta-train")
    window: dict[str, list[float]] = {}
    window_start, window_episodes = time.perf_counter(), 0
    model.train()
    while progress.step < mt.steps:
        epoch, skip = divmod(progress.micro, len(loader))
        sampler.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            started = time.perf_counter()
            with accelerator.accumulate(model):
                out = model(batch, mt.losses)
                accelerator.backward(out["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), mt.clip_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            progress.micro += 1
            n_episodes = int(accelerator.gather(torch.tensor([batch.kind.shape[0]], device=accelerator.device)).sum())
            progress.episodes += n_episodes
            window_episodes += n_episodes
            correct = (out["logits"].argmax(-1) == out["targets"]).float()
            for name in ("loss", "answer", "meta", "recall", "vicreg", "match"):
                if name in out:
                    window.setdefault(name, []).append(out[name].item())
            if len(correct):
                window.setdefault("accuracy", []).append(correct.mean().item())
            progress.seconds += time.perf_counter() - started
            if not accelerator.sync_gradients:
                continue
            progress.step += 1
            bar.update(1)
            if progress.step % mt.log_every == 0 or progress.step == mt.steps:
                row = {k: sum(v) / len(v) for k, v in window.items()}
                row.update(
                    step=progress.step, epoch=epoch, lr=scheduler.get_last_lr()[0],
                    episodes_per_s=window_episodes / (time.perf_counter() - window_start), seconds=progress.seconds,
                )
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row.get('accuracy', 0):.3f}")
                if accelerator.is_main_process:
                    with metrics_path.open("a", newline="") as f:
                        csv.DictWriter(f, fields).writerow({k: (f"{row[k]:.5g}" if k in row else "") for k in fields})
                window, window_start, window_episodes = {}, time.perf_counter(), 0
            if progress.step % mt.checkpoint_every == 0 or progress.step == mt.steps:
                accelerator.save_state(str(ckpt_root / f"step-{progress.step}"))
                if accelerator.is_main_process:  # keep the newest two
                    for old in sorted(ckpt_root.glob("step-*"), key=lambda p: int(p.name.split("-")[1]))[:-2]:
                        for f in sorted(old.rglob("*"), reverse=True):
                            f.unlink() if f.is_file() else f.rmdir()
                        old.rmdir()
            if progress.step >= mt.steps:
                break
    bar.close()
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        record = {
            "config": str(args.config), "steps": progress.step, "episodes_seen": progress.episodes,
            "train_seconds": round(progress.seconds, 1), "processes": accelerator.num_processes,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})",
            "threads_per_process": mt.threads, "tasks": mt.babi_tasks, "babi_set": mt.babi_set,
            "teach_recall_episodes": mt.teach_recall_episodes, "losses": vars(mt.losses).copy(),
        }
        save_checkpoint(
            mt.export_path, accelerator.unwrap_model(model), candidates=candidates.phrases,
            feature_layer=cfg.interface.feature_layer, cache_tag=model_tag(cfg.model), record=record,
        )
        print(json.dumps({"exported": mt.export_path, **record}))
    accelerator.end_training()


if __name__ == "__main__":
    main()
