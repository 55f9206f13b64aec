"""bAbI per-task accuracy of the trained neural memory: memory-only, and through the chatbot.

    python bench/babi.py [--quick] [--config configs/meta_babi.yaml] [--checkpoint PATH] [--chat-questions 10]

Memory-only: each test story (../shared/data/babi/en/*_test.txt, 1,000 questions per
task) is written to the memory sentence by sentence; each question is answered by
reading it and decoding the read to the nearest of the answers in bAbI's training
files (no LM generation). Task 8's list answers are scored as sets.
Through the chatbot (configs/default.yaml with this checkpoint as its neural memory):
the first `--chat-questions` questions of each task, their stories told as chat
turns and the question asked in chat; the reply must give the answer (chat_correct).
--quick: 100 questions per task memory-only, and task 1's first 2 questions in chat.
The last line is `RESULT {json}`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: only the model's thread runs a thread team (chatbot/__init__.py)

import argparse
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import torch

from chatbot import Agent
from chatbot.config import Config, load_config
from chatbot.controller import Controller
from chatbot.loading import model_tag
from storage import Store
from training.batching import Candidates
from training.config import TrainingConfig, load_training_config
from training.episodes import BABI_TASKS, Episode, babi_file, load_babi, parse_tasks
from training.evaluate import answer_episodes, load_for_eval

ROOT = Path(__file__).resolve().parent.parent

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


def evaluate(cfg: TrainingConfig, checkpoint: str | Path, tasks: list[int], limit: int, *, show: bool = True) -> dict:
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


DIRECTIONS = {"n": "north", "s": "south", "e": "east", "w": "west"}


def chat_correct(task: int, answer: str, reply: str) -> bool:
    """Whether a chat reply gives the answer: every listed item (task 8), both directions in
    order (task 19, "s,w" said as words), the right one of yes/no/maybe, else the word itself."""
    words = re.findall(r"[a-z0-9]+", reply.lower())
    if task == 19:
        wanted = [DIRECTIONS[d] for d in answer.split(",")]
        said = [w for w in words if w in DIRECTIONS.values()]
        return said[: len(wanted)] == wanted
    if answer in ("yes", "no", "maybe"):
        said = [w for w in words if w in ("yes", "no", "maybe")]
        return bool(said) and said[0] == answer
    if task == 7:
        return answer in words or str(NUMBERS.index(answer)) in words if answer in NUMBERS else answer in words
    return all(item in words for item in answer.split(","))


NUMBERS = ["none", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten"]


def chat_evaluate(cfg: Config, checkpoint: str | Path, tasks: list[int], limit: int, data_dir: str | Path) -> dict:
    """Accuracy through the whole chatbot: each story told as chat turns (bAbI from `data_dir`), each question
    asked in chat, the reply checked for the answer (chat_correct). Returns task -> accuracy and question counts."""
    cfg.neural_memory.checkpoint = str(checkpoint)
    cfg.generation.max_new_tokens = 32
    controller = Controller.from_config(cfg.model)
    accuracy, counts = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        agent = Agent(cfg, controller, Store(Path(tmp) / "babi-chat.db"))
        try:
            for t in tasks:
                right = []
                stories = first_questions(load_babi(babi_file(data_dir, t, "test", "en"), t), limit)
                for k, story in enumerate(stories):
                    for step in story.steps:
                        reply = agent.chat(f"babi{t}-{k}", step.text)
                        if step.is_question:
                            right.append(chat_correct(t, step.answer, reply))
                accuracy[t], counts[t] = sum(right) / len(right), len(right)
                print(f"  chat task {t}: {accuracy[t]:.1%} of {len(right)}", file=sys.stderr, flush=True)
        finally:
            agent.close()
    return {"chat_error_by_task": {str(t): round(1 - a, 4) for t, a in accuracy.items()},
            "chat_mean_error": round(1 - sum(accuracy.values()) / len(accuracy), 4), "chat_questions_per_task": counts}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "meta_babi.yaml"), help="the training config of the checkpoint")
    parser.add_argument("--checkpoint", help="trained weights (default: the config's meta_train.export_path)")
    parser.add_argument("--quick", action="store_true", help="100 questions per task; the chatbot on task 1's first 2 questions")
    parser.add_argument("--tasks", default="1-20", help="tasks to score, e.g. 1-20 or 1,2,6")
    parser.add_argument("--chat-config", default=str(ROOT / "configs" / "default.yaml"), help="the chatbot that answers in chat")
    parser.add_argument("--chat-questions", type=int, default=10, help="questions per task asked through the chatbot (0: none)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_training_config(args.config)
    checkpoint = args.checkpoint or cfg.neural_memory.checkpoint or cfg.meta_train.export_path
    if not Path(checkpoint).is_file():
        sys.exit(f"no checkpoint at {checkpoint}: train one with train_meta.py or pass --checkpoint")
    tasks = parse_tasks(args.tasks)
    result = evaluate(cfg, checkpoint, tasks, 100 if args.quick else 1000)
    chat_tasks, chat_limit = ([1], 2) if args.quick else (tasks, args.chat_questions)
    if chat_limit:
        torch.set_num_threads(2)
        chat = chat_evaluate(load_config(args.chat_config), checkpoint, chat_tasks, chat_limit, cfg.meta_train.data_dir)
        print(f"through the chatbot ({args.chat_config}, stories told as chat turns): " + ", ".join(
            f"task {t} {1 - e:.0%}" for t, e in chat["chat_error_by_task"].items()) + f"; mean error {chat['chat_mean_error']:.1%}")
        result.update(chat)
    print("RESULT " + json.dumps({**result, "quick": args.quick}))


if __name__ == "__main__":
    main()
