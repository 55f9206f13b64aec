"""Meta-train the memory interface and neural memory, or the controller's adapter.

    python train_meta.py --config configs/meta_chat.yaml           # CPU, one process
    accelerate launch --multi_gpu --num_processes 2 train_meta.py --config configs/meta_chat.yaml
    accelerate launch train_meta.py --config configs/meta_babi.yaml  # one GPU, or many with --multi_gpu

(accelerate's --multi_gpu launcher starts torchrun; on a machine without a GPU the
processes form a CPU group, which is how data-parallel training runs on two cores.)

Stage "memory" (meta_train.stage): the controller LM stays frozen, so its hidden
states of every distinct sentence are computed once into `meta_train.feature_cache`
(the main process does it; the others wait) and training never runs the LM. An
episode is a story or a dialogue: statements are written to the memory in order,
questions are answered by reading it. The losses (answer CE, MNM meta loss, VICReg
on keys, recall, match) are switched by their weights in `meta_train.losses`.

Stage "adapter": LoRA weights on the controller's upper layers, trained to answer
from memory notes laid out as the agent lays them out (training/adapter_data.py), scored
afterwards on the validation split.

Stage "answerable": the not-told probe (chatbot/answerable.py), a logistic read of the
app's model's state at the prompt's last position, fitted on generated train prompts
whose notes answer the question or not; its layer, penalty and threshold are chosen
on the validation split (training/answerable.py).

The first two stages share the loop: gradient accumulation, mixed precision on GPU, resume
from the newest state under `output_dir/checkpoints/` (accelerate's save_state:
model, optimizer, scheduler, RNG, progress), tqdm on the main process, metrics in
`output_dir/metrics.csv`, the trained weights in `export_path`.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch import nn
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from chatbot.config import GenerationConfig
from chatbot.controller import Controller
from chatbot.loading import model_tag
from memory.interface import MemoryModel, save_checkpoint
from training.batching import Candidates, StepBudgetSampler, episode_texts, make_batch, statement_words
from training.breadth import Breadth
from training.config import TrainingConfig, load_training_config
from training.episodes import Episode, TeachRecall, babi_file, load_babi, parse_tasks
from training.features import FeatureCache

STEP_BUDGET = 2048  # padded episode-steps per micro-batch: bounds the fast weights kept for backprop
TOKEN_BUDGET = 256  # padded tokens per example slot of an adapter micro-batch


@dataclass
class Stage:
    """What the shared loop trains, and how."""

    model: nn.Module
    loader: DataLoader
    sampler: StepBudgetSampler
    forward: Callable[[nn.Module, Any], dict[str, torch.Tensor]]  # "loss" and metrics, each a scalar tensor
    count: Callable[[Any], int]  # examples (episodes, conversations) in a batch
    export: Callable[[nn.Module, dict], dict]  # writes the trained weights; returns what to add to the record
    metrics: list[str]


# ---- stage "memory" -------------------------------------------------------------------------


def training_episodes(cfg: TrainingConfig) -> list[Episode]:
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


def decoding_phrases(cfg: TrainingConfig, episodes: list[Episode]) -> list[str]:
    """Every phrase a read may be decoded to: the answers, and with word distractors every statement word."""
    phrases = answer_phrases(episodes) + sorted({s.fact.value for e in episodes for s in e.steps if s.fact})
    return phrases + (statement_words(episodes) if cfg.meta_train.word_distractors else [])


def prepare_features(cfg: TrainingConfig, episodes: list[Episode], phrases: list[str], *, progress: bool) -> FeatureCache:
    """The feature cache holding every sentence and answer of `episodes`; computes what is missing."""
    cache = FeatureCache(cfg.meta_train.feature_cache, model_tag(cfg.model), cfg.interface.feature_layer)
    texts = episode_texts(episodes)
    if any(cache.missing(texts, phrases)):
        cache.ensure(Controller.from_config(cfg.model), texts, phrases, progress=progress)
    return cache


def memory_stage(cfg: TrainingConfig, accelerator: Accelerator) -> Stage:
    mt = cfg.meta_train
    episodes = training_episodes(cfg)
    phrases = answer_phrases(episodes)
    with accelerator.main_process_first():
        cache = prepare_features(cfg, episodes, decoding_phrases(cfg, episodes), progress=accelerator.is_main_process)
    candidates = Candidates(cache, phrases)
    model = MemoryModel(cfg.neural_memory, cfg.interface, cache.feats[0].shape[-1], candidates.vectors.shape[-1])
    sampler = StepBudgetSampler([len(e.steps) for e in episodes], STEP_BUDGET, mt.batch_size, mt.seed)
    loader = DataLoader(
        episodes, batch_sampler=sampler,
        collate_fn=lambda eps: make_batch(eps, cache, candidates, word_distractors=mt.word_distractors),
    )

    def forward(model: nn.Module, batch) -> dict[str, torch.Tensor]:
        out = model(batch, mt.losses)
        metrics = {k: out[k] for k in ("loss", "answer", "meta", "recall", "vicreg", "match", "pointer") if k in out}
        if len(out["targets"]):
            metrics["accuracy"] = (out["logits"].argmax(-1) == out["targets"]).float().mean()
        return metrics

    def export(model: nn.Module, record: dict) -> dict:
        record.update(tasks=mt.babi_tasks, babi_set=mt.babi_set, teach_recall_episodes=mt.teach_recall_episodes,
                      losses=vars(mt.losses).copy())
        save_checkpoint(mt.export_path, model, candidates=candidates.phrases, feature_layer=cfg.interface.feature_layer,
                        cache_tag=model_tag(cfg.model), record=record)
        return {}

    return Stage(model, loader, sampler, forward, lambda b: b.kind.shape[0], export,
                 ["loss", "answer", "meta", "recall", "vicreg", "match", "pointer", "accuracy"])


# ---- stage "adapter" ------------------------------------------------------------------------


def adapter_stage(cfg: TrainingConfig, accelerator: Accelerator) -> Stage:
    from peft import LoraConfig, get_peft_model, get_peft_model_state_dict

    from chatbot.adapter import adapter_config
    from training.adapter_data import GENERAL, ReplyCache, training_examples

    mt, at = cfg.meta_train, cfg.meta_train.adapter
    if at.from_layer < cfg.interface.feature_layer:
        raise SystemExit(f"adapter.from_layer {at.from_layer} would change the memory's features (layer {cfg.interface.feature_layer})")
    model_cfg = cfg.model
    model_cfg.adapter = model_cfg.not_told_probe = ""  # trained from the plain model (the probe reads the adapted one)
    controller = Controller.from_config(model_cfg)
    tokenizer = controller.tokenizer
    # transformers' generate: the lean decoder would re-view the weights as fused matrices, which accelerate's
    # saved state then stores once per storage, and a resumed run could not load
    gen = GenerationConfig(max_new_tokens=at.max_new_tokens, decode="transformers")

    def base_reply(prompt: str) -> str:
        ids = controller.chat_ids([{"role": "system", "content": cfg.chat.system_prompt}, {"role": "user", "content": prompt}])
        return "".join(controller.generate(ids, gen=gen)).strip()

    names = Path(mt.data_dir) / "names" / "names.txt"
    replies = ReplyCache(at.replies_cache, base_reply)
    with accelerator.main_process_first():  # the main process distils every reply once; the others read the file
        for prompt in GENERAL + TeachRecall("train", names).chat + TeachRecall("val", names).chat + (
                Breadth("train", names).chat if at.breadth_share > 0 else []):
            replies(prompt)
    replies = ReplyCache(at.replies_cache, base_reply)
    babi = babi_file(mt.data_dir, 1, "train", mt.babi_set) if at.babi_share > 0 else None
    examples = training_examples(names, cfg.chat.system_prompt, dialogues=at.dialogues, max_facts=at.max_facts,
                                 seed=mt.seed, split="train", reply_of=replies, history_turns=at.history_turns,
                                 babi_file=babi, babi_share=at.babi_share, paraphrase_share=at.paraphrase_share,
                                 crowded_share=at.crowded_share, other_fact_share=at.other_fact_share,
                                 breadth_share=at.breadth_share, breadth_chatty=at.breadth_chatty,
                                 message_sentences=at.message_sentences, breadth_lookalikes=at.breadth_lookalikes)
    data = [_tokenized(tokenizer, e.messages, e.reply) for e in examples]
    layers = controller.model.config.num_hidden_layers
    lora = adapter_config(rank=at.rank, alpha=at.alpha, dropout=at.dropout, targets=at.targets,
                          from_layer=at.from_layer, layers=layers)
    model = get_peft_model(controller.model.train(), LoraConfig(**lora))
    if at.init:
        _load_lora(model, at.init, lora)
    sampler = StepBudgetSampler([len(ids) for ids, _ in data], TOKEN_BUDGET * mt.batch_size, mt.batch_size, mt.seed)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id  # masked out; some tokenizers set none
    loader = DataLoader(data, batch_sampler=sampler, collate_fn=lambda items: _padded(items, pad))

    def forward(model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        out = model(**batch)
        predicted = out.logits[:, :-1].argmax(-1)
        labels = batch["labels"][:, 1:]
        scored = labels != -100
        return {"loss": out.loss, "accuracy": (predicted[scored] == labels[scored]).float().mean()}

    def export(model: nn.Module, record: dict) -> dict:
        state = {k: v.detach().cpu().half() for k, v in get_peft_model_state_dict(model).items()}
        scores = score_adapter(model, controller, cfg, names, replies)
        record.update(dialogues=at.dialogues, examples=len(examples), paraphrase_share=at.paraphrase_share,
                      crowded_share=at.crowded_share, other_fact_share=at.other_fact_share, breadth_share=at.breadth_share,
                      breadth_chatty=at.breadth_chatty, message_sentences=at.message_sentences,
                      breadth_lookalikes=at.breadth_lookalikes, lora=lora, validation=scores)
        path = Path(mt.export_path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save({"config": lora, "state_dict": state, "record": record}, path)
        return {"validation": scores}

    return Stage(model, loader, sampler, forward, lambda b: b["input_ids"].shape[0], export, ["loss", "accuracy"])


def _load_lora(model: nn.Module, path: str, lora: dict) -> None:
    """Start the peft `model` from the LoRA weights at `path`, which must have been trained with the same `lora` layout."""
    from peft import set_peft_model_state_dict

    data = torch.load(path, weights_only=True)
    layout = ("r", "target_modules", "layers_to_transform")
    if any(data["config"].get(k) != lora[k] for k in layout):
        raise SystemExit(f"adapter.init {path}: its {layout} differ from this config's")
    result = set_peft_model_state_dict(model, {k: v.float() for k, v in data["state_dict"].items()})
    if result.unexpected_keys:
        raise SystemExit(f"adapter.init {path}: unexpected tensors {result.unexpected_keys[:3]}")


def _tokenized(tokenizer, messages: list[dict], reply: str) -> tuple[list[int], list[int]]:
    """Ids of the conversation with its reply, and labels that score only the reply (and its end)."""
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    whole = tokenizer.apply_chat_template(messages + [{"role": "assistant", "content": reply}], tokenize=False)
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    ids = tokenizer(whole.rstrip("\n"), add_special_tokens=False)["input_ids"]
    return ids, [-100] * len(prompt_ids) + ids[len(prompt_ids):]


def _padded(items: list[tuple[list[int], list[int]]], pad: int) -> dict[str, torch.Tensor]:
    width = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), width), pad, dtype=torch.long)
    labels = torch.full((len(items), width), -100, dtype=torch.long)
    mask = torch.zeros(len(items), width, dtype=torch.long)
    for i, (x, y) in enumerate(items):
        ids[i, : len(x)], labels[i, : len(y)], mask[i, : len(x)] = torch.tensor(x), torch.tensor(y), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@torch.no_grad()
def score_adapter(model: nn.Module, controller: Controller, cfg: TrainingConfig, names: Path, replies: Callable[[str], str]) -> dict:
    """Greedy replies of the adapted model on validation-split dialogues and held-out general questions."""
    from training.adapter_data import GENERAL, GENERAL_TRAIN, NOT_TOLD, training_examples

    at = cfg.meta_train.adapter
    model.eval()
    examples = training_examples(names, cfg.chat.system_prompt, dialogues=at.eval_dialogues, max_facts=at.max_facts,
                                 seed=cfg.meta_train.seed + 1, split="val", reply_of=replies,
                                 history_turns=at.history_turns)
    # transformers' generate runs the peft model, LoRA path included
    gen = GenerationConfig(max_new_tokens=at.max_new_tokens, decode="transformers")
    tally: dict[str, list[bool]] = {}
    for e in examples:
        if e.kind not in ("answer", "not_told"):
            continue
        text = "".join(controller.generate(controller.chat_ids(e.messages), gen=gen))
        ok = e.value.lower() in text.lower() if e.kind == "answer" else any(t[:20] in text for t in NOT_TOLD) or "n't" in text
        tally.setdefault(e.kind, []).append(ok)
    kept = 0
    held_out = GENERAL[GENERAL_TRAIN:]
    for prompt in held_out:  # does the adapted model still say what the base model said?
        ids = controller.chat_ids([{"role": "system", "content": cfg.chat.system_prompt}, {"role": "user", "content": prompt}])
        kept += "".join(controller.generate(ids, gen=gen)).strip()[:40] == replies(prompt)[:40]
    return {
        "answer_accuracy": round(sum(tally.get("answer", [])) / max(1, len(tally.get("answer", []))), 4),
        "answer_questions": len(tally.get("answer", [])),
        "not_told_rate": round(sum(tally.get("not_told", [])) / max(1, len(tally.get("not_told", []))), 4),
        "general_same_start": round(kept / len(held_out), 4),
    }


# ---- stage "answerable" ---------------------------------------------------------------------


def answerable_stage(cfg: TrainingConfig, config_path: str) -> dict:
    """Fit the not-told probe on the app's model (adapter merged): states of train prompts, then the
    layer, penalty and threshold with the best validation figures; writes it to `export_path`."""
    from chatbot.answerable import AnswerProbe, file_digest
    from training.answerable import auroc, fit_logistic, last_states, probe_examples

    mt, at = cfg.meta_train, cfg.meta_train.answerable
    started = time.perf_counter()
    controller = Controller.from_config(cfg.model)
    names = Path(mt.data_dir) / "names" / "names.txt"
    data = {}
    for split, dialogues, conversations in (("train", at.dialogues, at.conversations),
                                            ("val", at.val_dialogues, at.val_conversations)):
        examples = probe_examples(split, names, cfg.chat.system_prompt, dialogues=dialogues, conversations=conversations,
                                  seed=mt.seed + (split == "val"), not_told_rate=at.not_told_rate,
                                  other_fact_share=at.other_fact_share, general_share=at.general_share,
                                  chatty=at.breadth_chatty, message_sentences=at.message_sentences,
                                  lookalikes=at.lookalikes)
        prompts = (controller.chat_ids(e.messages) for e in tqdm(examples, desc=f"states {split}"))
        data[split] = (last_states(controller.model, prompts), torch.tensor([e.kind == "not_told" for e in examples]),
                       torch.tensor([e.kind == "distilled" for e in examples]))
    (x, y, _), (vx, vy, chat) = data["train"], data["val"]
    best = None
    for layer in (int(v) for v in at.layers.split(",")):
        for l2 in (float(v) for v in at.l2.split(",")):
            mean, scale, weight, bias = fit_logistic(x[:, layer], y, l2)
            scores = torch.sigmoid(((vx[:, layer] - mean) / scale) @ weight + bias)
            area = auroc(vy, scores)
            print(f"layer {layer} l2 {l2}: val AUROC {area:.4f}")
            if best is None or area > best[0]:
                best = area, layer, l2, mean, scale, weight, bias, scores
    area, layer, l2, mean, scale, weight, bias, scores = best
    # the threshold with the best balanced accuracy on validation: as many never-answered caught as answered kept
    candidates = sorted(set(scores.tolist()))
    balanced = [(float((scores[vy] > t).float().mean() + (scores[~vy] <= t).float().mean()) / 2, t) for t in candidates]
    accuracy, threshold = max(balanced)
    probe = AnswerProbe(layer=layer, mean=mean, scale=scale, weight=weight, bias=bias, threshold=threshold,
                        model=model_tag(cfg.model), adapter=file_digest(cfg.model.adapter))
    probe.save(mt.export_path)
    return {
        "config": config_path, "stage": "answerable", "train_prompts": len(y), "val_prompts": len(vy),
        "layer": layer, "l2": l2, "threshold": round(threshold, 4), "val_auroc": round(area, 4),
        "val_balanced_accuracy": round(accuracy, 4),
        "val_not_told_caught": round(float((scores[vy] > threshold).float().mean()), 4),
        "val_answerable_kept": round(float((scores[~vy & ~chat] <= threshold).float().mean()), 4),
        "val_chat_kept": round(float((scores[chat] <= threshold).float().mean()), 4),  # chit-chat and general questions
        "seconds": round(time.perf_counter() - started, 1),
    }


# ---- the shared loop ------------------------------------------------------------------------


class Progress:
    """Optimizer steps done, saved with accelerate's state so a resumed run continues the count."""

    def __init__(self) -> None:
        self.step = 0
        self.micro = 0
        self.seconds = 0.0
        self.examples = 0

    def state_dict(self) -> dict:
        return {"step": self.step, "micro": self.micro, "seconds": self.seconds, "examples": self.examples}

    def load_state_dict(self, state: dict) -> None:
        self.step, self.micro = int(state["step"]), int(state["micro"])
        self.seconds, self.examples = float(state["seconds"]), int(state["examples"])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="YAML config (model, neural_memory, interface, meta_train)")
    parser.add_argument("--steps", type=int, help="override meta_train.steps")
    parser.add_argument("--fresh", action="store_true", help="ignore saved state in output_dir and start over")
    args = parser.parse_args(argv)
    cfg = load_training_config(args.config)
    mt = cfg.meta_train
    if mt.stage not in ("memory", "adapter", "answerable"):
        raise SystemExit(f"{args.config}: meta_train.stage must be memory, adapter or answerable, got {mt.stage!r}")
    if args.steps is not None:
        mt.steps = args.steps
    torch.set_num_threads(mt.threads)
    if mt.stage == "answerable":  # a closed-form fit on frozen states: no optimizer loop to share
        print(json.dumps({"exported": mt.export_path, **answerable_stage(cfg, args.config)}))
        return
    unused = mt.stage == "memory" and (not cfg.neural_memory.enabled or not mt.losses.match)
    accelerator = Accelerator(
        # on a machine without a GPU, several launched processes form a CPU (gloo) group
        cpu=not torch.cuda.is_available(),
        gradient_accumulation_steps=mt.grad_accum,
        mixed_precision=mt.mixed_precision if torch.cuda.is_available() else mt.cpu_mixed_precision,
        # the schedule counts optimizer steps, not per-process batches
        step_scheduler_with_optimizer=False,
        # with the memory or the match loss off some parameters get no gradient, which DDP must be told
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=unused)],
    )
    set_seed(mt.seed)
    stage = (memory_stage if mt.stage == "memory" else adapter_stage)(cfg, accelerator)
    optimizer = torch.optim.AdamW([p for p in stage.model.parameters() if p.requires_grad], lr=mt.lr, weight_decay=mt.weight_decay)

    def schedule(step: int) -> float:
        if step < mt.warmup_steps:
            return (step + 1) / mt.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - mt.warmup_steps) / max(1, mt.steps - mt.warmup_steps))))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    model, optimizer, loader, scheduler = accelerator.prepare(stage.model, optimizer, stage.loader, scheduler)
    progress = Progress()
    accelerator.register_for_checkpointing(progress)

    out_dir = Path(mt.output_dir)
    ckpt_root = out_dir / "checkpoints"
    saved = sorted(ckpt_root.glob("step-*"), key=lambda p: int(p.name.split("-")[1])) if ckpt_root.is_dir() else []
    if saved and not args.fresh:
        accelerator.load_state(str(saved[-1]))
        accelerator.print(f"resumed from {saved[-1]} at step {progress.step}")
    metrics_path = out_dir / "metrics.csv"
    fields = ["step", "epoch", "lr", *stage.metrics, "examples_per_s", "seconds"]
    if accelerator.is_main_process:
        out_dir.mkdir(parents=True, exist_ok=True)
        if not metrics_path.is_file() or args.fresh or not saved:
            with metrics_path.open("w", newline="") as f:
                csv.writer(f).writerow(fields)

    bar = tqdm(total=mt.steps, initial=progress.step, disable=not accelerator.is_main_process, desc=f"train {mt.stage}")
    window: dict[str, list[float]] = {}
    window_start, window_examples = time.perf_counter(), 0
    model.train()
    while progress.step < mt.steps:
        epoch, skip = divmod(progress.micro, len(loader))
        stage.sampler.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip) if skip else loader
        for batch in batches:
            started = time.perf_counter()
            with accelerator.accumulate(model):
                out = stage.forward(model, batch)
                accelerator.backward(out["loss"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(model.parameters(), mt.clip_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            progress.micro += 1
            count = int(accelerator.gather(torch.tensor([stage.count(batch)], device=accelerator.device)).sum())
            progress.examples += count
            window_examples += count
            for name, value in out.items():
                window.setdefault(name, []).append(value.item())
            progress.seconds += time.perf_counter() - started
            if not accelerator.sync_gradients:
                continue
            progress.step += 1
            bar.update(1)
            if progress.step % mt.log_every == 0 or progress.step == mt.steps:
                row = {k: sum(v) / len(v) for k, v in window.items()}
                row.update(step=progress.step, epoch=epoch, lr=scheduler.get_last_lr()[0], seconds=progress.seconds,
                           examples_per_s=window_examples / (time.perf_counter() - window_start))
                bar.set_postfix(loss=f"{row['loss']:.3f}", acc=f"{row.get('accuracy', 0):.3f}")
                if accelerator.is_main_process:
                    with metrics_path.open("a", newline="") as f:
                        csv.DictWriter(f, fields).writerow({k: (f"{row[k]:.5g}" if k in row else "") for k in fields})
                window, window_start, window_examples = {}, time.perf_counter(), 0
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
            "config": str(args.config), "stage": mt.stage, "steps": progress.step, "episodes_seen": progress.examples,
            "train_seconds": round(progress.seconds, 1), "processes": accelerator.num_processes,
            "device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({platform.processor() or platform.machine()})",
            "threads_per_process": mt.threads,
        }
        record.update(stage.export(accelerator.unwrap_model(model), record))
        print(json.dumps({"exported": mt.export_path, **record}))
    accelerator.wait_for_everyone()  # the other ranks must not tear the process group down while the main one exports
    accelerator.end_training()


if __name__ == "__main__":
    main()
