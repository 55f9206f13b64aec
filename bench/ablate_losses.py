"""What each meta-training loss (and the memory itself) buys: short runs, one term off at a time.

    python bench/ablate_losses.py [--quick] [--data babi|teach] [--steps 150] [--tasks 1,2,6,11] [--questions 200]
                                  [--variants "all losses,no meta loss"]

--data babi: one model per variant from configs/meta_babi.yaml, trained on the given bAbI
tasks only, scored on the first `--questions` test questions of each task.
--data teach: one model per variant from configs/meta_chat.yaml, trained on 600 generated
teach-and-recall dialogues of up to 12 facts, scored on 40 validation-split dialogues of
10 facts, decoding among each batch's statement words as chat does.
Same seed, data and steps for every variant (memory-only decoding, no LM generation).
Runs are short, so the table compares variants under an equal budget; it is not the
shipped models' accuracy. --quick (under a minute once the feature cache exists):
20 steps of two variants, all losses and no memory, on 2 tasks or 10 dialogues. The
last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import time
from pathlib import Path

import torch
import yaml

from chatbot.controller import Controller
from chatbot.loading import model_tag
from training.batching import Candidates, statement_words
from training.config import load_training_config
from training.episodes import TeachRecall, parse_tasks
from training.evaluate import answer_episodes, load_for_eval

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str, path: Path):
    """A script of this repository loaded from its file: neither it nor bench/ is an installed package."""
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # as an import would: dataclasses and pickle look classes up by module name
    spec.loader.exec_module(module)
    return module


train_meta = _script("train_meta", ROOT / "train_meta.py")
evaluate = _script("bench_babi", ROOT / "bench" / "babi.py").evaluate

VARIANTS = {
    "all losses": {},
    "no meta loss": {"meta_train": {"losses": {"meta": 0.0}}},
    "no VICReg": {"meta_train": {"losses": {"vicreg": 0.0}}},
    "no recall loss": {"meta_train": {"losses": {"recall": 0.0}}},
    "no match loss": {"meta_train": {"losses": {"match": 0.0}}},
    "no pointer loss": {"meta_train": {"losses": {"pointer": 0.0}}},
    "answer CE only": {"meta_train": {"losses": {"meta": 0.0, "vicreg": 0.0, "recall": 0.0, "match": 0.0, "pointer": 0.0}}},
    "MNM-p rule": {"neural_memory": {"rule": "p"}},
    "no memory (state only)": {"neural_memory": {"enabled": False}, "interface": {"output_mlp": True}},
}
TEACH_EPISODES, TEACH_FACTS, EVAL_DIALOGUES, EVAL_FACTS = 600, 12, 40, 10


def teach_accuracy(cfg_path: Path, checkpoint: Path, dialogues: int) -> float:
    """Memory-only accuracy on validation-split dialogues, decoding among each batch's words."""
    cfg = load_training_config(cfg_path)
    loaded = load_for_eval(checkpoint, model_tag=model_tag(cfg.model), cache_dir=cfg.meta_train.feature_cache)
    gen = TeachRecall("val", Path(cfg.meta_train.data_dir) / "names" / "names.txt")
    rng = random.Random(1)
    episodes = [gen.episode(rng, EVAL_FACTS, corrections=EVAL_FACTS // 5) for _ in range(dialogues)]
    values = sorted({s.answer for e in episodes for s in e.questions})
    words = statement_words(episodes)
    loaded.features(episodes, values + words, lambda: Controller.from_config(cfg.model))
    predicted = answer_episodes(loaded, episodes, Candidates(loaded.cache, values), batch_size=8, word_distractors=True)
    pairs = [(p, q.answer) for e, ps in zip(episodes, predicted) for p, q in zip(ps, e.questions)]
    return sum(p == a for p, a in pairs) / len(pairs)


def merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", choices=("babi", "teach"), default="babi")
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--tasks", default="1,2,6,11", help="bAbI tasks (--data babi)")
    parser.add_argument("--questions", type=int, default=200, help="test questions per bAbI task")
    parser.add_argument("--out", default=str(ROOT / "data" / "runs" / "ablation"))
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated subset of the variants")
    parser.add_argument("--quick", action="store_true", help="20 steps of all losses vs no memory; 2 tasks or 10 dialogues")
    args = parser.parse_args()
    torch.set_num_threads(1)
    teach = args.data == "teach"
    steps = 20 if args.quick else args.steps
    names = ["all losses", "no memory (state only)"] if args.quick else [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    base = yaml.safe_load((ROOT / "configs" / ("meta_chat.yaml" if teach else "meta_babi.yaml")).read_text())
    out = Path(args.out) / args.data
    out.mkdir(parents=True, exist_ok=True)
    tasks = parse_tasks("1,2" if args.quick and not teach else args.tasks)
    data = (
        {"babi_tasks": "", "teach_recall_episodes": TEACH_EPISODES, "teach_recall_facts": TEACH_FACTS,
         "feature_cache": str(ROOT / "data" / "features" / "ablation-teach")}
        if teach else {"babi_tasks": ",".join(map(str, tasks)), "teach_recall_episodes": 0}
    )
    rows = {}
    for name, change in ((n, VARIANTS[n]) for n in names):
        slug = name.replace(" ", "-").replace("(", "").replace(")", "")
        cfg_dict = merge(merge(base, change), {"meta_train": {
            **data, "steps": steps, "warmup_steps": min(50, steps // 5), "threads": 1, "batch_size": 16 if teach else 32,
            "output_dir": str(out / slug), "export_path": str(out / f"{slug}.pt"), "checkpoint_every": steps,
        }})
        path = out / f"{slug}.yaml"
        path.write_text(yaml.safe_dump(cfg_dict))
        started = time.perf_counter()
        train_meta.main(["--config", str(path), "--fresh"])
        seconds = round(time.perf_counter() - started)
        if teach:
            rows[name] = {"accuracy": round(teach_accuracy(path, out / f"{slug}.pt", 10 if args.quick else EVAL_DIALOGUES), 4),
                          "train_seconds": seconds}
        else:
            result = evaluate(load_training_config(path), out / f"{slug}.pt", tasks, 50 if args.quick else args.questions, show=False)
            rows[name] = {"error_by_task": result["error_by_task"], "mean_error": result["mean_error"], "train_seconds": seconds}
    print(f"\nLoss ablation on {args.data} ({steps} steps each, memory-only decoding)")
    if teach:
        print(f"| variant | accuracy, {EVAL_FACTS}-fact validation dialogues | train s |\n|---|---|---|")
        for name, row in rows.items():
            print(f"| {name} | {row['accuracy']:.1%} | {row['train_seconds']} |")
    else:
        print("| variant | " + " | ".join(f"task {t} error" for t in tasks) + " | mean error | train s |")
        print("|---|" + "---|" * (len(tasks) + 2))
        for name, row in rows.items():
            print(f"| {name} | " + " | ".join(f"{row['error_by_task'][str(t)]:.1%}" for t in tasks)
                  + f" | {row['mean_error']:.1%} | {row['train_seconds']} |")
    print("RESULT " + json.dumps({"data": args.data, "steps": steps, "tasks": None if teach else tasks, "variants": rows,
                                  "quick": args.quick}))


if __name__ == "__main__":
    main()
