"""Teach-and-recall with the trained neural memory, memory-only decoding.

    python bench/teach_recall.py [--quick] [--config configs/default.yaml] [--checkpoint PATH]

Dialogues from the generator's test split (people, values and phrasings never
seen in training): N facts taught with chit-chat between them, a fifth of them
corrected later, more chit-chat, then every fact asked. A read is decoded to the
nearest of all the test split's values (plus the dialogues' codes), not only the
ones the dialogue mentioned. Reports accuracy at 10, 50 and 200 facts, the share
of corrected facts answered with the latest value, and the time of one write and
one read on this CPU (interface + memory, batch 1, as in chat; the controller's
feature pass is timed apart). The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path[0] = str(ROOT)  # not bench/: its vocab.py would shadow the vocab package

from chatbot.config import load_config  # noqa: E402
from memory.batching import Candidates, make_batch  # noqa: E402
from memory.episodes import Episode, TeachRecall  # noqa: E402
from chatbot.controller import Controller, model_tag  # noqa: E402
from memory.evaluate import answer_episodes, load_for_eval  # noqa: E402
from memory.features import hidden_states  # noqa: E402
from memory.interface import QUESTION, STATEMENT  # noqa: E402

SIZES = (10, 50, 200)


@torch.no_grad()
def latency_ms(loaded, episode: Episode, candidates: Candidates) -> tuple[float, float]:
    """Median ms of one write (a statement step) and one read (a question step), batch 1."""
    batch = make_batch([episode], loaded.cache, candidates)
    model = loaded.model
    state = model.reset(1)
    writes, reads = [], []
    for t, step in enumerate(episode.steps):
        kind = batch.kind[:, t]
        start = time.perf_counter()
        state, out = model.step(state, batch.feats[:, t], batch.emb[:, t], batch.mask[:, t], kind)
        if kind.item() == QUESTION:
            model.scores(out.answer, candidates.vectors).argmax(-1)
        elapsed = (time.perf_counter() - start) * 1000
        if kind.item() == QUESTION:
            reads.append(elapsed)
        elif kind.item() == STATEMENT:
            writes.append(elapsed)
    return statistics.median(writes), statistics.median(reads)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--checkpoint", help="trained weights (default: neural_memory.checkpoint of the config)")
    parser.add_argument("--quick", action="store_true", help="2 dialogues per size instead of 10")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.config)
    checkpoint = args.checkpoint or cfg.neural_memory.checkpoint
    if not checkpoint:
        sys.exit("no checkpoint: pass --checkpoint or set neural_memory.checkpoint in the config")
    loaded = load_for_eval(checkpoint, model_tag=model_tag(cfg.model), cache_dir=cfg.meta_train.feature_cache)
    gen = TeachRecall("test", Path(cfg.meta_train.data_dir) / "names" / "names.txt")
    rng = random.Random(args.seed)
    per_size = 2 if args.quick else 10
    dialogues = {n: [gen.episode(rng, n, corrections=n // 5) for _ in range(per_size)] for n in SIZES}
    everything = [e for eps in dialogues.values() for e in eps]
    codes = {s.fact.value for e in everything for s in e.steps if s.fact and s.fact.relation == "code"}
    phrases = sorted(set(gen.values) | codes)
    loaded.features(everything, phrases, lambda: Controller.from_config(cfg.model))
    candidates = Candidates(loaded.cache, phrases)

    print(f"checkpoint: {checkpoint}  ({loaded.meta['record'].get('steps')} steps); "
          f"{len(phrases)} candidate values; {per_size} test dialogues per size")
    print(f"{'facts':>6} {'questions':>9} {'accuracy':>9} {'corrected':>10} {'latest-value':>13}")
    accuracy, latest, corrected_n = {}, {}, {}
    for n, eps in dialogues.items():
        predicted = answer_episodes(loaded, eps, candidates, batch_size=8)
        pairs = [(p, s) for e, ps in zip(eps, predicted) for p, s in zip(ps, e.questions)]
        accuracy[n] = sum(p == s.answer for p, s in pairs) / len(pairs)
        fixed = [(p, s) for p, s in pairs if s.tag == "corrected"]
        corrected_n[n] = len(fixed)
        latest[n] = sum(p == s.answer for p, s in fixed) / len(fixed)
        print(f"{n:>6} {len(pairs):>9} {accuracy[n]:>9.1%} {len(fixed):>10} {latest[n]:>13.1%}")
    all_fixed = sum(corrected_n.values())
    latest_all = sum(latest[n] * corrected_n[n] for n in SIZES) / all_fixed

    write_ms, read_ms = latency_ms(loaded, dialogues[50][0], candidates)
    controller = Controller.from_config(cfg.model)
    sentence = dialogues[50][0].steps[0].text
    hidden_states(controller, [sentence], loaded.meta["feature_layer"])  # warm-up
    start = time.perf_counter()
    for _ in range(5):
        hidden_states(controller, [sentence], loaded.meta["feature_layer"])
    encode_ms = (time.perf_counter() - start) / 5 * 1000
    print(f"latest value after corrections: {latest_all:.1%} of {all_fixed}")
    print(f"per fact on this CPU (1 thread): write {write_ms:.2f} ms, read {read_ms:.2f} ms "
          f"(interface + memory); controller features to layer {loaded.meta['feature_layer']}: {encode_ms:.1f} ms")
    result = {
        "accuracy_by_facts": {str(n): round(a, 4) for n, a in accuracy.items()},
        "latest_value_after_correction": round(latest_all, 4),
        "corrected_questions": all_fixed,
        "dialogues_per_size": per_size,
        "write_ms": round(write_ms, 3),
        "read_ms": round(read_ms, 3),
        "controller_features_ms": round(encode_ms, 1),
        "candidates": len(phrases),
        "checkpoint": str(checkpoint),
        "quick": args.quick,
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
