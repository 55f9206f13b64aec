"""bAbI per-task accuracy of the trained neural memory, memory-only decoding.

    python bench/babi.py [--quick] [--config configs/default.yaml] [--checkpoint PATH]

Each test story (../shared/data/babi/en/*_test.txt, 1,000 questions per task) is
written to the memory sentence by sentence; each question is answered by reading
it and decoding the read to the nearest of the answers in bAbI's training files
(no LM generation). Task 8's list answers are scored as sets. --quick scores the first
100 questions of each task. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: its vocab.py would shadow the vocab package

from chatbot.config import Config, load_config  # noqa: E402
from memory.batching import Candidates  # noqa: E402
from memory.episodes import BABI_TASKS, Episode, babi_file, load_babi, parse_tasks  # noqa: E402
from chatbot.controller import Controller, model_tag  # noqa: E402
from memory.evaluate import answer_episodes, load_for_eval  # noqa: E402

TASKS_WITH_10K = [t for t in BABI_TASKS if t != 3]  # the 10k qa3 train file is missing


def first_questions(episodes: list[Episode], limit: int) -> list[Episode]:
    """Stories in file order until `limit` questions; the last story is cut after its limit-th."""
    kept, count = [], 0
    for episode in episodes:
        if count >= limit:
            break
        steps = []
        for step in episode.steps:
            if step.is_question:
                if count >= limit:
                    break
                count += 1
            steps.append(step)
        kept.append(Episode(steps, episode.task))
    return kept


def same_answer(task: int, predicted: str, truth: str) -> bool:
    if task == 8:
        return sorted(predicted.split(",")) == sorted(truth.split(","))
    return predicted == truth


def evaluate(cfg: Config, checkpoint: str | Path, tasks: list[int], limit: int, *, show: bool = True) -> dict:
    """Score `checkpoint` on the first `limit` test questions of each task; returns the RESULT dict."""
    loaded = load_for_eval(checkpoint, model_tag=model_tag(cfg.model), cache_dir=cfg.meta_train.feature_cache)
    stories = {t: first_questions(load_babi(babi_file(cfg.meta_train.data_dir, t, "test", "en"), t), limit) for t in tasks}
    # decode among bAbI's own training answers (not the teach-and-recall values also trained on)
    phrases = sorted(
        {s.answer for t in BABI_TASKS for e in load_babi(babi_file(cfg.meta_train.data_dir, t, "train", "en"), t) for s in e.questions}
    )
    loaded.features([e for eps in stories.values() for e in eps], phrases, lambda: Controller.from_config(cfg.model))
    candidates = Candidates(loaded.cache, phrases)
    say = print if show else (lambda *a: None)
    started = time.perf_counter()
    errors, counts = {}, {}
    say(f"checkpoint: {checkpoint}  ({loaded.meta['record'].get('steps')} steps)")
    say(f"{'task':>4}  {'name':<24} {'questions':>9} {'accuracy':>9} {'error':>7}")
    for t in tasks:
        predicted = answer_episodes(loaded, stories[t], candidates)
        pairs = [(p, s.answer) for e, ps in zip(stories[t], predicted) for p, s in zip(ps, e.questions)]
        right = sum(same_answer(t, p, a) for p, a in pairs)
        counts[t] = len(pairs)
        errors[t] = 1 - right / len(pairs)
        say(f"{t:>4}  {BABI_TASKS[t]:<24} {len(pairs):>9} {right / len(pairs):>9.1%} {errors[t]:>7.1%}")
    mean = sum(errors.values()) / len(errors)
    with_10k = [errors[t] for t in tasks if t in TASKS_WITH_10K]
    mean_10k = sum(with_10k) / len(with_10k) if with_10k else None
    say(f"mean error {mean:.1%} over {len(errors)} tasks"
        + (f"; {mean_10k:.1%} over the {len(with_10k)} with 10k training data" if mean_10k is not None else "")
        + f"; tasks above 20% error: {sum(e > 0.2 for e in errors.values())}; {time.perf_counter() - started:.1f} s")
    return {
        "error_by_task": {str(t): round(e, 4) for t, e in errors.items()},
        "mean_error": round(mean, 4),
        "mean_error_10k_tasks": None if mean_10k is None else round(mean_10k, 4),
        "tasks_over_20pct": sum(e > 0.2 for e in errors.values()),
        "questions_per_task": counts,
        "decoding": f"memory-only: nearest of {len(phrases)} bAbI training answers",
        "checkpoint": str(checkpoint),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--checkpoint", help="trained weights (default: neural_memory.checkpoint of the config)")
    parser.add_argument("--quick", action="store_true", help="100 questions per task")
    parser.add_argument("--tasks", default="1-20", help="tasks to score, e.g. 1-20 or 1,2,6")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    checkpoint = args.checkpoint or cfg.neural_memory.checkpoint
    if not checkpoint:
        sys.exit("no checkpoint: pass --checkpoint or set neural_memory.checkpoint in the config")
    result = evaluate(cfg, checkpoint, parse_tasks(args.tasks), 100 if args.quick else 1000)
    print("RESULT " + json.dumps({**result, "quick": args.quick}))


if __name__ == "__main__":
    main()
