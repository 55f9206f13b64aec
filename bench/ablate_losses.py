"""What each meta-training loss (and the memory itself) buys: short runs, one term off at a time.

    python bench/ablate_losses.py [--steps 150] [--tasks 1,2,6,11] [--questions 200]

Trains one model per variant from configs/meta_babi.yaml on the given bAbI tasks
only (no teach-and-recall dialogues), with the same seed, data and steps, and scores
each on the first `--questions` test questions of each task (memory-only decoding).
Runs are short, so the table compares variants under equal budget; it is not the
shipped model's accuracy. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import time
from pathlib import Path

import torch
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: its vocab.py would shadow the vocab package

import train_meta  # noqa: E402
from chatbot.config import load_config  # noqa: E402
from memory.episodes import parse_tasks  # noqa: E402

# bench/ is not a package (and is kept off sys.path), so the bAbI scorer is loaded from its file
_spec = importlib.util.spec_from_file_location("bench_babi", ROOT / "bench" / "babi.py")
_babi = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_babi)
evaluate = _babi.evaluate

VARIANTS = {
    "all losses": {},
    "no meta loss": {"meta_train": {"losses": {"meta": 0.0}}},
    "no VICReg": {"meta_train": {"losses": {"vicreg": 0.0}}},
    "no recall loss": {"meta_train": {"losses": {"recall": 0.0}}},
    "answer CE only": {"meta_train": {"losses": {"meta": 0.0, "vicreg": 0.0, "recall": 0.0}}},
    "MNM-p rule": {"neural_memory": {"rule": "p"}},
    "no memory (GRU only)": {"neural_memory": {"enabled": False}},
}


def merge(base: dict, change: dict) -> dict:
    out = dict(base)
    for k, v in change.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", default=str(ROOT / "configs" / "meta_babi.yaml"))
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--tasks", default="1,2,6,11")
    parser.add_argument("--questions", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "data" / "runs" / "ablation"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = yaml.safe_load(Path(args.base).read_text())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tasks = parse_tasks(args.tasks)
    rows = {}
    for name, change in VARIANTS.items():
        slug = name.replace(" ", "-").replace("(", "").replace(")", "")
        cfg_dict = merge(base, change)
        cfg_dict = merge(cfg_dict, {"meta_train": {
            "babi_tasks": args.tasks, "teach_recall_episodes": 0, "steps": args.steps, "warmup_steps": min(50, args.steps // 5),
            "output_dir": str(out / slug), "export_path": str(out / f"{slug}.pt"), "checkpoint_every": args.steps,
        }})
        path = out / f"{slug}.yaml"
        path.write_text(yaml.safe_dump(cfg_dict))
        started = time.perf_counter()
        train_meta.main(["--config", str(path), "--fresh"])
        seconds = time.perf_counter() - started
        result = evaluate(load_config(path), out / f"{slug}.pt", tasks, args.questions, show=False)
        rows[name] = {"error_by_task": result["error_by_task"], "mean_error": result["mean_error"], "train_seconds": round(seconds)}
    print(f"\n{'variant':<22}" + "".join(f"{'task ' + str(t):>9}" for t in tasks) + f"{'mean err':>10}")
    for name, row in rows.items():
        print(f"{name:<22}" + "".join(f"{row['error_by_task'][str(t)]:>9.1%}" for t in tasks) + f"{row['mean_error']:>10.1%}")
    print("RESULT " + json.dumps({"steps": args.steps, "tasks": tasks, "questions_per_task": args.questions, "variants": rows}))


if __name__ == "__main__":
    main()
