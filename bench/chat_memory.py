"""The trained chat memory on its own (no LM generation): what its keys and values are good for.

    python bench/chat_memory.py [--quick] [--config configs/default.yaml] [--checkpoints a.pt,b.pt] [--sizes 20,50] [--people 16]

Validation-split teach-and-recall dialogues (people and values never seen in
training; a fifth of the facts corrected) are fed statement by statement into
ChatMemory, as a chat turn does; "50/16p" dialogues hold their 50 facts about 16
people (several facts each: home, work, pet, locker code). Per checkpoint and
dialogue it reports:

  pointer      a teaching statement's value points at the fact's value words
  decode       a question's read decodes to the answer word (among the dialogue's words)
  key@1, key@4     the statement that answers a question is the closest (among the 4
                   closest) by the learned read/write keys (memoria.vector: key)
  hidden@1, hidden@4   the same by the mean layer hidden state (memoria.vector: hidden)
  sentence@1, sentence@4   the same by all-MiniLM-L6-v2 sentence vectors (memoria.vector: sentence)
  note         the statement that answers a question is the note the agent picks among
               all earlier statements by MiniLM closeness (chatbot.prompt.rank_notes),
               for corrected facts and others, by three rules: `closest` alone;
               `margin`, naming the question's people, newest within 0.15 of the
               closest (the rule before statements superseded each other); `config`,
               the configured rule (chat.note_link_similarity, chat.note_recency_margin,
               chat.note_unnamed_closeness); `unnamed`, the configured rule with closeness
               taken with the question's names masked (chat.note_unnamed_closeness on)
  supersede@T  of the earlier writes a statement's write key reaches at cosine >= T
               (what consolidation.supersede_similarity = T would mark superseded),
               the share that really are the fact being corrected
  calibration  of each read's confidence (the probability of its decoded word): a
               reliability table and the expected calibration error (10 equal bins)
               against whether the word is the answer; and, with 3 questions a dialogue
               about a relation never taught of a person it taught something else of,
               how well the confidence tells taught from never-taught questions (AUROC:
               0.5 = not at all, 1 = always higher when something was taught)

These figures chose the defaults: how Memoria ranks engrams, and supersession
staying off. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

import torch

from chatbot import Controller, load_config
from chatbot.config import ChatConfig
from chatbot.notes import cue_words, rank_notes, unnamed_closeness
from memory.chat_memory import ChatMemory
from memory.interface import unit_keys
from memory.retrieval import SentenceEncoder
from training.episodes import TeachRecall

ROOT = Path(__file__).resolve().parent.parent
NAMES_FILE = ROOT.parent / "shared" / "data" / "names" / "names.txt"
THRESHOLDS = (0.9, 0.95, 0.98, 0.995)


NOTE_RULES = ("closest", "margin", "config", "unnamed")
NOTE_KEYS = tuple(f"{rule}_{kind}" for kind in ("corrected", "others") for rule in NOTE_RULES)


def score(memory: ChatMemory, encoder: SentenceEncoder, gen: TeachRecall, facts: int, dialogues: int, seed: int,
          chat: ChatConfig, people: int | None = None) -> dict:
    """Run `dialogues` validation dialogues of `facts` facts (about `people` people) through `memory`; shares over all of them."""
    rng = random.Random(seed)
    configured = dict(margin=chat.note_recency_margin, link=chat.note_link_similarity)
    rules = {"margin": dict(margin=0.15), "config": dict(configured, unnamed=chat.note_unnamed_closeness),
             "unnamed": dict(configured, unnamed=True)}
    hits = {k: [] for k in ("pointer", "decode", "key@1", "key@4", "hidden@1", "hidden@4", "sentence@1", "sentence@4",
                            *NOTE_KEYS)}
    reached = {t: [0, 0] for t in THRESHOLDS}  # threshold -> [right, all]
    reads: list[tuple[float, bool, bool]] = []  # (confidence, decoded the answer, the question's fact was taught)
    for d in range(dialogues):
        episode = gen.episode(rng, facts, corrections=facts // 5, people=people)
        features = memory.featurize([s.text for s in episode.steps])
        hidden = torch.nn.functional.normalize(torch.stack([f[1].float().mean(0) for f in features]), dim=-1)
        sentence = encoder([s.text for s in episode.steps])
        keys: dict[int, torch.Tensor] = {}  # statement index -> unit write key
        fact_of: dict[int, tuple] = {}  # statement index -> (subject, relation) it teaches
        for i, (step, feature) in enumerate(zip(episode.steps, features)):
            out = memory.step(f"bench{facts}-{d}", step.text, feature, question=step.is_question)
            key = unit_keys(out.key, memory.heads)
            if step.is_question:
                gold = step.support[0] - 1
                hits["decode"].append(out.recall.word == step.answer)
                reads.append((out.recall.confidence, out.recall.word == step.answer, True))
                by_sentence = {j: float(sentence[i] @ sentence[j]) for j in keys}
                for name, sims in (("key", {j: float(key @ k) for j, k in keys.items()}),
                                   ("hidden", {j: float(hidden[i] @ hidden[j]) for j in keys}),
                                   ("sentence", by_sentence)):
                    order = sorted(sims, key=sims.__getitem__, reverse=True)
                    hits[f"{name}@1"].append(order[0] == gold)
                    hits[f"{name}@4"].append(gold in order[:4])
                kind = "corrected" if step.tag == "corrected" else "others"
                hits[f"closest_{kind}"].append(max(by_sentence, key=by_sentence.__getitem__) == gold)
                said = list(by_sentence)  # every earlier statement, oldest first
                cues = cue_words(step.text)
                unnamed = dict(zip(said, unnamed_closeness(step.text, cues, [episode.steps[j].text for j in said],
                                                           [by_sentence[j] for j in said], encoder)))
                for rule, options in rules.items():
                    close = unnamed if options.get("unnamed") else by_sentence
                    candidates = [(j, episode.steps[j].text, close[j]) for j in said]
                    ranked = rank_notes(candidates, cues, options["margin"], vectors=sentence[said], link=options.get("link"))
                    hits[f"{rule}_{kind}"].append(said[ranked[0]] == gold)
                continue
            if step.fact:
                hits["pointer"].append(out.write.value.rstrip(".") == step.fact.value)
                for j, old in keys.items():
                    cosine = float(key @ old)
                    for t in THRESHOLDS:
                        if cosine >= t:
                            reached[t][0] += fact_of.get(j) == (step.fact.subject, step.fact.relation)
                            reached[t][1] += 1
                fact_of[i] = (step.fact.subject, step.fact.relation)
            keys[i] = key
        for text in gen.untold_questions(episode, rng, 3):
            out = memory.step(f"bench{facts}-{d}", text, memory.featurize([text])[0], question=True)
            reads.append((out.recall.confidence, False, False))
    result = {k: round(sum(v) / len(v), 4) if v else None for k, v in hits.items()}
    result["calibration"] = calibration(reads)
    result["questions"] = len(hits["decode"])
    result["supersede"] = {str(t): {"right": r, "marked": n} for t, (r, n) in reached.items()}
    return result


def calibration(reads: list[tuple[float, bool, bool]], bins: int = 10) -> dict:
    """Reliability of read confidences: per bin of taught questions' confidence, (count,
    mean confidence, share right); ECE; and AUROC of confidence, taught vs never taught."""
    taught = [(c, right) for c, right, told in reads if told]
    table, ece = [], 0.0
    for b in range(bins):
        inside = [(c, r) for c, r in taught if b / bins <= c < (b + 1) / bins or (b == bins - 1 and c == 1.0)]
        if inside:
            confidence, accuracy = sum(c for c, _ in inside) / len(inside), sum(r for _, r in inside) / len(inside)
            table.append({"bin": f"{b / bins:.1f}-{(b + 1) / bins:.1f}", "reads": len(inside),
                          "confidence": round(confidence, 4), "right": round(accuracy, 4)})
            ece += len(inside) / len(taught) * abs(confidence - accuracy)
    told = [c for c, _, t in reads if t]
    untold = [c for c, _, t in reads if not t]
    pairs = [(a > b) + 0.5 * (a == b) for a in told for b in untold]
    return {"ece": round(ece, 4) if taught else None, "table": table,
            "auroc_taught_vs_untold": round(sum(pairs) / len(pairs), 4) if pairs else None, "untold_reads": len(untold)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 dialogues of 20 facts, the chat checkpoint only")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--checkpoints", default="checkpoints/mnm_chat.pt,checkpoints/mnm_babi.pt")
    parser.add_argument("--sizes", default="20,50", help="facts per dialogue")
    parser.add_argument("--people", type=int, default=16, help="people in the crowded dialogues of 50 facts (0 = none)")
    parser.add_argument("--dialogues", type=int, default=6, help="dialogues per size")
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    checkpoints = args.checkpoints.split(",")[:1] if args.quick else args.checkpoints.split(",")
    runs = [(n, None) for n in ([20] if args.quick else [int(s) for s in args.sizes.split(",")])]
    if args.people:  # the quick run's crowded dialogues hold 20 facts
        runs.append((runs[-1][0] if args.quick else 50, args.people))
    dialogues = 2 if args.quick else args.dialogues

    cfg = load_config(args.config)
    cfg.neural_memory.min_confidence = 0.0
    cfg.consolidation.supersede_similarity = None  # measured here for every threshold instead
    controller = Controller.from_config(cfg.model)
    encoder = SentenceEncoder()
    gen = TeachRecall("val", NAMES_FILE)
    results: dict[str, dict] = {}
    for checkpoint in checkpoints:
        memory = ChatMemory.from_checkpoint(ROOT / checkpoint, controller, cfg=cfg.neural_memory,
                                            consolidation=cfg.consolidation)
        results[Path(checkpoint).stem] = {f"{n}/{p}p" if p else str(n): score(memory, encoder, gen, n, dialogues, args.seed,
                                                                            cfg.chat, people=p) for n, p in runs}

    pct = lambda v: "-" if v is None else f"{100 * v:.1f}%"  # noqa: E731
    print(f"{dialogues} validation dialogues per size; seed {args.seed}\n")
    print("| checkpoint | facts | questions | pointer | decode | key@1 | key@4 | hidden@1 | hidden@4 | sentence@1 | sentence@4 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, by_size in results.items():
        for n, r in by_size.items():
            print(f"| {name} | {n} | {r['questions']} | {pct(r['pointer'])} | {pct(r['decode'])} | {pct(r['key@1'])} "
                  f"| {pct(r['key@4'])} | {pct(r['hidden@1'])} | {pct(r['hidden@4'])} | {pct(r['sentence@1'])} | {pct(r['sentence@4'])} |")
    first = next(iter(results.values()))  # the note does not depend on the checkpoint
    print(f"\nThe note (MiniLM closeness; config: link {cfg.chat.note_link_similarity}, margin {cfg.chat.note_recency_margin}, "
          f"names masked {cfg.chat.note_unnamed_closeness}):\n")
    print("| facts | " + " | ".join(f"{k.split('_')[1]}: {k.split('_')[0]}" for k in NOTE_KEYS) + " |")
    print("|---|" + "---|" * len(NOTE_KEYS))
    for n, r in first.items():
        print(f"| {n} | " + " | ".join(pct(r[k]) for k in NOTE_KEYS) + " |")
    print("\n| checkpoint | facts | " + " | ".join(f"supersede@{t}: right/marked" for t in THRESHOLDS) + " |")
    print("|---|---|" + "---|" * len(THRESHOLDS))
    for name, by_size in results.items():
        for n, r in by_size.items():
            cells = [f"{r['supersede'][str(t)]['right']}/{r['supersede'][str(t)]['marked']}" for t in THRESHOLDS]
            print(f"| {name} | {n} | " + " | ".join(cells) + " |")
    print("\nCalibration of the reads' confidence (taught questions: is the decoded word the answer?):\n")
    print("| checkpoint | facts | ECE | AUROC taught vs never taught | bins: range reads confidence right |")
    print("|---|---|---|---|---|")
    for name, by_size in results.items():
        for n, r in by_size.items():
            c = r["calibration"]
            cells = "; ".join(f"{t['bin']} {t['reads']} {t['confidence']:.2f} {t['right']:.2f}" for t in c["table"])
            print(f"| {name} | {n} | {c['ece']} | {c['auroc_taught_vs_untold']} | {cells} |")
    print("RESULT " + json.dumps({"results": results, "dialogues": dialogues, "quick": args.quick}))


if __name__ == "__main__":
    main()
