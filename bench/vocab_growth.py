"""Elastic vocabulary on a stream of real text rich in new names, with the real model.

    python bench/vocab_growth.py [--quick] [--config configs/default.yaml] [--compare] [--threads N]

The stream: bAbI stories (../shared/data/babi/en, train split), one sentence per
message, with every character re-cast by a name drawn from a fixed pool sampled from
the makemore names list (../shared/data/names/names.txt), so the same unseen names
recur across stories as they would in a long chat. Each message is one turn of
`ElasticVocab.observe` with the configured rates, saved to a temporary SQLite file as
the app does. Held-out text: bAbI test stories re-cast from the same pool (names the
bot has met, in sentences it has not seen).

Measured: tokens per message with the base tokenizer, as encoded when it arrived, and
with the final vocabulary; vocabulary size over the stream; perplexity of the model
on the held-out stories with the base and the grown vocabulary, both normalised by
the number of base tokens (exp(total NLL / base tokens)), so a shorter token sequence
cannot look better by itself; seconds per turn with and without growth, per prune;
round trips of every message; a restart (save, load into a fresh model) being an
identity; and after pruning every added token, logits on base ids equal to the
untouched model's. --compare reruns the stream with the plain start rows (mean, first;
no fitting). The last line is
`RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import re
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from chatbot.config import load_config
from chatbot.controller import Controller
from storage import Store
from storage.vocab import load_vocab, save_vocab
from vocab import ElasticVocab, VocabConfig
from vocab.rows import INIT_RULES, embedding_matrix

ROOT = Path(__file__).resolve().parent.parent

DATA = ROOT.parent / "shared" / "data"
# bAbI's characters; the stream replaces each with a pool name, one per story.
BABI_NAMES = (
    "Mary John Sandra Daniel Fred Bill Jeff Julie Lily Julius Greg Brian Bernhard Emily Winona "
    "Gertrude Jessica Jason Antoine Yann Sumit"
).split()
TASKS = ("qa1_single-supporting-fact", "qa2_two-supporting-facts", "qa5_three-arg-relations", "qa6_yes-no-questions",
         "qa11_basic-coreference", "qa12_conjunction", "qa13_compound-coreference", "qa15_basic-deduction")


def stories(path: Path) -> list[list[str]]:
    """Sentences of each story (questions without their answers)."""
    out: list[list[str]] = []
    for line in path.read_text().splitlines():
        number, rest = line.split(" ", 1)
        if number == "1":
            out.append([])
        out[-1].append(rest.split("\t")[0].strip())
    return out


def recast(story: list[str], pool: list[str], rng: random.Random) -> list[str]:
    """The story with each bAbI character renamed to a distinct name from `pool`."""
    pattern = re.compile(r"\b(%s)\b" % "|".join(BABI_NAMES))
    present = sorted({m.group(0) for s in story for m in pattern.finditer(s)})
    cast = dict(zip(present, rng.sample(pool, len(present))))
    return [pattern.sub(lambda m: cast[m.group(0)], s) for s in story]


def build_texts(messages: int, held_stories: int, pool_size: int, seed: int) -> tuple[list[str], list[str], list[str]]:
    """(stream messages, held-out stories, name pool)."""
    rng = random.Random(seed)
    names = [n.capitalize() for n in (DATA / "names" / "names.txt").read_text().split()]
    pool = rng.sample(names, pool_size)
    train = [s for t in TASKS for s in stories(DATA / "babi" / "en" / f"{t}_train.txt")]
    test = [s for t in TASKS for s in stories(DATA / "babi" / "en" / f"{t}_test.txt")]
    rng.shuffle(train)
    rng.shuffle(test)
    stream: list[str] = []
    for story in train:
        stream += recast(story, pool, rng)
        if len(stream) >= messages:
            break
    held = [" ".join(recast(s, pool, rng)) for s in test[:held_stories]]
    return stream[:messages], held, pool


@torch.no_grad()
def nll(model: torch.nn.Module, sequences: list[list[int]], start_id: int) -> float:
    """Summed negative log-likelihood (nats) of each sequence after `start_id`."""
    total = 0.0
    for ids in sequences:
        x = torch.tensor([[start_id] + ids])
        logp = model(input_ids=x).logits[0, :-1].float().log_softmax(-1)
        total -= logp.gather(1, x[0, 1:, None]).sum().item()
    return total


def run_stream(controller: Controller, cfg: VocabConfig, stream: list[str], db_path: Path, checkpoints: int) -> dict:
    vocab = ElasticVocab(controller.tokenizer, cfg, controller.model)
    store = Store(db_path)
    base_counts, online_counts, sizes = [], [], []
    seconds = {"grow": [], "prune": [], "plain": [], "save": []}
    roundtrip = True
    every = max(1, len(stream) // checkpoints)
    for k, text in enumerate(stream, 1):
        start = time.perf_counter()
        events = vocab.observe(text)  # one user (the anonymous one), whose tokens encode() uses
        took = time.perf_counter() - start
        kinds = {e.kind for e in events}
        seconds["prune" if "prune" in kinds else "grow" if "grow" in kinds else "plain"].append(took)
        start = time.perf_counter()
        with store.transaction() as db:
            save_vocab(db, vocab)
        seconds["save"].append(time.perf_counter() - start)
        ids = vocab.encode(text)
        roundtrip &= vocab.decode(ids) == text
        base_counts.append(len(vocab.base_encode(text)))
        online_counts.append(len(ids))
        if k % every == 0 or k == len(stream):
            sizes.append((k, vocab.size - vocab.base_size))
    final_counts = [len(vocab.encode(t)) for t in stream]
    roundtrip &= all(vocab.decode(vocab.encode(t)) == t for t in stream)
    return dict(vocab=vocab, store=store, base=base_counts, online=online_counts, final=final_counts,
                sizes=sizes, seconds=seconds, roundtrip=roundtrip)


def restart_identity(model_cfg, vocab: ElasticVocab, store: Store, stream: list[str]) -> bool:
    """Load the saved state into a freshly loaded model: same tokens, same rows, same encodings."""
    fresh = Controller.from_config(model_cfg)
    again = ElasticVocab(fresh.tokenizer, vocab.cfg, fresh.model)
    load_vocab(store.db, again)
    same_tokens = [(t.id, t.pieces, t.expansion, t.level) for t in again.tokens] == [
        (t.id, t.pieces, t.expansion, t.level) for t in vocab.tokens
    ]
    same_rows = torch.equal(embedding_matrix(again.model), embedding_matrix(vocab.model))
    same_ids = all(again.encode(t) == vocab.encode(t) for t in stream)
    same_state = again.step == vocab.step and again.users == vocab.users  # each user's holdings and counts
    return same_tokens and same_rows and same_ids and same_state


def mean(xs: list[float]) -> float:
    return statistics.fmean(xs) if xs else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short stream and held-out set (under a minute)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--compare", action="store_true", help="also rerun the stream with other row inits (mean, first without fitting)")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (1 is fastest on a shared 2-core box)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    vcfg = replace(cfg.vocab, enabled=True)
    messages, held_n, pool_n = (60, 6, 12) if args.quick else (1500, 40, 120)
    stream, held, pool = build_texts(messages, held_n, pool_n, seed=0)

    controller = Controller.from_config(cfg.model)
    model = controller.model
    base_logits = model(input_ids=torch.tensor([list(range(2, 66))])).logits.detach().clone()
    start_id = controller.tokenizer.convert_tokens_to_ids("<|endoftext|>")
    held_base = [controller.tokenizer(h, add_special_tokens=False)["input_ids"] for h in held]
    n_base = sum(map(len, held_base))
    t0 = time.perf_counter()
    ppl_base = math.exp(nll(model, held_base, start_id) / n_base)
    eval_seconds = time.perf_counter() - t0

    label = f"{vcfg.init} + {vcfg.fit_steps} fit steps" if vcfg.fit_steps else vcfg.init
    variants = {label: vcfg}
    if args.compare:
        variants |= {rule: replace(vcfg, init=rule, fit_steps=0) for rule in INIT_RULES}
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, variant) in enumerate(variants.items()):
            if k:
                controller = Controller.from_config(cfg.model)
            run = run_stream(controller, variant, stream, Path(tmp) / f"{k}.db", checkpoints=10)
            vocab = run["vocab"]
            held_ids = [vocab.encode(h) for h in held]
            run["roundtrip"] &= all(vocab.decode(i) == h for i, h in zip(held_ids, held))
            run["ppl"] = math.exp(nll(vocab.model, held_ids, start_id) / n_base)
            run["held_tokens"] = sum(map(len, held_ids))
            runs[name] = run
        main_run = runs[label]
        vocab = main_run["vocab"]
        restart_ok = restart_identity(cfg.model, vocab, main_run["store"], stream)
        levels = sorted({t.level for t in vocab.tokens})
        added = [t.text for t in sorted(vocab.tokens, key=lambda t: -vocab.strength(t))[:12]]
        # Prune everything that grew, one token at a time: per-prune seconds, then the base model must be back.
        prune_seconds = []
        while vocab.tokens:
            start = time.perf_counter()
            vocab.prune([vocab.tokens[-1].id])  # the only user's: it leaves the lexicon
            prune_seconds.append(time.perf_counter() - start)
        with torch.no_grad():
            restored = torch.allclose(vocab.model(input_ids=torch.tensor([list(range(2, 66))])).logits, base_logits)
        for run in runs.values():
            run["store"].close()

    m = main_run
    print(f"# Elastic vocabulary on bAbI stories re-cast with {pool_n} names from names.txt "
          f"({'quick' if args.quick else 'full'}; {len(stream)} messages, {held_n} held-out stories, "
          f"{n_base} held-out base tokens, rows: {label}, grow_after={vcfg.grow_after}, decay={vcfg.decay})")
    print()
    print("| measure | value |")
    print("|---|---|")
    print(f"| tokens per message, base tokenizer | {mean(m['base']):.2f} |")
    print(f"| tokens per message, as encoded when it arrived | {mean(m['online']):.2f} |")
    print(f"| tokens per message, final vocabulary | {mean(m['final']):.2f} |")
    print(f"| held-out tokens, base -> grown | {n_base} -> {m['held_tokens']} |")
    print(f"| held-out perplexity per base token, base vocabulary | {ppl_base:.3f} |")
    print(f"| held-out perplexity per base token, grown vocabulary | {m['ppl']:.3f} ({100 * (m['ppl'] / ppl_base - 1):+.1f}%) |")
    print(f"| added tokens at the end (levels {levels}) | {m['sizes'][-1][1]} |")
    print(f"| strongest added tokens | {', '.join(repr(a) for a in added)} |")
    print(f"| seconds per turn: no growth / with growth / with a prune | {mean(m['seconds']['plain']):.4f} / "
          f"{mean(m['seconds']['grow']):.3f} ({len(m['seconds']['grow'])} turns) / "
          f"{mean(m['seconds']['prune']):.3f} ({len(m['seconds']['prune'])} turns) |")
    print(f"| seconds per SQLite save (one turn) | {mean(m['seconds']['save']):.4f} |")
    print(f"| seconds per single-token prune (matrix remap) | {mean(prune_seconds):.4f} |")
    print(f"| every message and held-out story round-trips | {m['roundtrip']} |")
    print(f"| restart (save, load into a fresh model) is an identity | {restart_ok} |")
    print(f"| after pruning all added tokens, base logits unchanged | {restored} |")
    print(f"| held-out perplexity evaluation, base (s) | {eval_seconds:.1f} |")
    print()
    print("Vocabulary size over the stream (added tokens after message k):")
    print("| message | " + " | ".join(str(k) for k, _ in m["sizes"]) + " |")
    print("|---|" + "---|" * len(m["sizes"]))
    print("| added | " + " | ".join(str(n) for _, n in m["sizes"]) + " |")
    if args.compare:
        print()
        print("Row initialisation (same stream; perplexity per base token on the held-out stories):")
        print("| rows | added tokens | tokens/message final | ppl grown | vs base | s per growth turn |")
        print("|---|---|---|---|---|---|")
        for name, run in runs.items():
            print(f"| {name} | {run['sizes'][-1][1]} | {mean(run['final']):.2f} | {run['ppl']:.3f} | "
                  f"{100 * (run['ppl'] / ppl_base - 1):+.1f}% | {mean(run['seconds']['grow']):.3f} |")
    result = {
        "tokens_per_message_before": round(mean(m["base"]), 4),
        "tokens_per_message_after": round(mean(m["final"]), 4),
        "ppl_base": round(ppl_base, 4),
        "ppl_grown": round(m["ppl"], 4),
        "roundtrip_ok": bool(m["roundtrip"]),
        "restart_ok": bool(restart_ok),
        "base_logits_restored": bool(restored),
        "added_tokens": m["sizes"][-1][1],
        "rows": label,
        "seconds_per_growth_turn": round(mean(m["seconds"]["grow"]), 4),
        "seconds_per_prune": round(mean(prune_seconds), 4),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
