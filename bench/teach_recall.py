"""Teach-and-recall through the chatbot: six systems side by side, same controller, same dialogues.

    python bench/teach_recall.py [--quick] [--config configs/default.yaml] [--systems a,b] [--dialogues 3,2,1] [--people 16]

Dialogues come from the generator's test split (people, values and phrasings never
seen in training; --split val for choosing settings): N facts are taught, one chat
turn each, with chit-chat between them; a fifth of them are corrected later; more
chit-chat; then every fact is asked.
Each fact is about someone new, or with --people N, about N people, several facts each.
Every utterance is a real chat turn (Agent.chat_stream: vocabulary, memories,
generation, SQLite). A question counts as answered when the reply contains the
fact's latest value (case-insensitive). The systems differ only in their config:

  no_memory     the chatbot without memories (it still sees its last 8 turns)
  full_context  the whole conversation in the prompt, oldest turns dropped to fit 8,192 tokens
  retrieval     the 4 past statements closest to the message (all-MiniLM-L6-v2) put in the prompt
  memoria_only  engrams reminded by Memoria; no neural memory
  neural_only   the neural memory's recalled sentence; no engram store
  full_system   both, with consolidation (the product's default)
  full_unspelled  the full system without the note-spelling bias (generation.note_spelling_bias 0)
  full_unanswered the full system without the answer bias (generation.note_answer_bias 0)
  full_unlinked   the full system without statements superseding each other: the note is the
                newest within 0.15 of the closest (chat.note_link_similarity off, margin 0.15,
                names in: chat.note_unnamed_closeness off)
  full_unnamed  the full system with closeness to the question taken with the names masked
                (chat.note_unnamed_closeness on, margin 0.1)
  full_fit20    the full system with 20 distillation steps on a grown token's row instead
                of 5 (vocab.fit_steps 20)
  full_capitalized_cues  the full system whose cue words are only capitalized words and numbers
                (a lowercase name the user has used is no cue: chat.name_cues off)
  full_topic_cues  the full system ranking statements by the message's other content words
                ("boiler", "code") and taking answer words from them: chat.topic_cues on
  full_no_quoted_corrections  the full system without restating a note by a later message that
                quotes its value as wrong ("Correction: 4471, not 7731."): chat.quoted_corrections off
  full_base_replies  the full system with replies held to base pieces, never the
                vocabulary's added tokens (generation.reply_added_tokens off)
  full_unnamed_base_replies  full_unnamed and full_base_replies together
  full_probe_off  the full system whose not-told probe only scores, never makes a reply
                "not told" (generation.not_told_above 1.0; the default is 0.6)
  full_probe_eager  the same probe making replies "not told" above 0.35 (generation.not_told_above 0.35)
  full_one_note  the full system with one note a prompt (chat.max_notes 1)
  full_keep_superseded  the full system that may show a statement beside the later one
                superseding it (chat.note_drop_superseded off)

Also measured: accuracy after a restart between teaching and asking (a new Agent
on the same SQLite file), the share of questions whose teaching sentence was in the
prompt (`notes_hit`), time per stage, and, without the LM, the neural memory's own
decoding accuracy among each dialogue's words with its write and read time.
With --frozen, the frozen hand-written set (bench/data/frozen, reported only, never
tuned on) is run instead of the generated dialogues: conversations with restarts where
marked, scored as recall, latest value, after restart, not told and wrong value claimed,
and on its long conversations whether the answering message was among the notes and
whether a reply repeats a fragment over and over. With --handval, the hand-written
validation set (bench/data/handval), written apart from the generator in other voices,
is run and scored the same way: settings are chosen on it, never on the frozen set.
With --untold K, after its questions each dialogue (not the restart's) is asked K more
about a relation never taught of someone it taught something else of ("Where does
Oriel work?" when only her home was taught): a reply holding any value the dialogue
taught is a wrong claim; one saying it was not told, without a value, is right. These
turns are not timed, but like any turn they feed the vocabulary that later dialogues
on the same SQLite file read. Replies are capped at 48 new tokens (--max-new-tokens).
A size given 0 dialogues is not run and reported as null. The last line is `RESULT {json}`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: only the model's thread runs a thread team (chatbot/__init__.py)

import argparse
import copy
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from chatbot import Agent, Controller, load_config
from chatbot.config import Config
from chatbot.turn import MEMORY_STAGES
from memory.chat_memory import ChatMemory
from storage import Store
from training.breadth import breadth_conversations
from training.episodes import Episode, TeachRecall
from training.frozen import (
    FROZEN_DIR,
    HANDVAL_DIR,
    NOT_TOLD,
    Conversation,
    load_frozen,
    score,
)

ROOT = Path(__file__).resolve().parent.parent

SYSTEMS = {
    "no_memory": {"memoria.enabled": False, "neural_memory.enabled": False},
    "full_context": {"memoria.enabled": False, "neural_memory.enabled": False, "chat.history_turns": 1_000_000,
                     "chat.max_prompt_tokens": 8192},
    "retrieval": {"memoria.enabled": False, "neural_memory.enabled": False, "retrieval.enabled": True},
    "memoria_only": {"neural_memory.enabled": False},
    "neural_only": {"memoria.enabled": False},
    "full_system": {},
    "full_unspelled": {"generation.note_spelling_bias": 0.0},
    "full_unanswered": {"generation.note_answer_bias": 0.0},
    "full_unlinked": {"chat.note_link_similarity": None, "chat.note_recency_margin": 0.15, "chat.note_unnamed_closeness": False},
    "full_unnamed": {"chat.note_recency_margin": 0.1, "chat.note_unnamed_closeness": True},
    "full_fit20": {"vocab.fit_steps": 20},
    "full_capitalized_cues": {"chat.name_cues": False},
    "full_topic_cues": {"chat.topic_cues": True},
    "full_no_quoted_corrections": {"chat.quoted_corrections": False},
    "full_base_replies": {"generation.reply_added_tokens": False},
    "full_unnamed_base_replies": {"chat.note_recency_margin": 0.1, "chat.note_unnamed_closeness": True,
                                  "generation.reply_added_tokens": False},
    "full_probe_off": {"generation.not_told_above": 1.0},
    "full_probe_eager": {"generation.not_told_above": 0.35},
    "full_three_notes": {"chat.max_notes": 3},
    "full_recency_unrelated": {"chat.note_recency_related": False},
    "full_sentence_notes": {"chat.note_message_sentences": 1},
    "full_topic_answer_words": {"chat.topic_answer_words": True},
    "full_own_names": {"chat.note_message_names": False},
    "full_spell_base_pieces": {"generation.spell_base_pieces": True},
    "full_word_overlap": {"chat.note_word_overlap": 0.2},
    "full_one_note": {"chat.max_notes": 1},
    "full_keep_superseded": {"chat.note_drop_superseded": False},
    "full_whole_message": {"chat.question_focus": False},
    "full_any_kind": {"chat.note_answer_kind": False},
}
NAMES_FILE = ROOT.parent / "shared" / "data" / "names" / "names.txt"
SIZES = (10, 50, 200)
RESTART_FACTS = 20

def share(items: list[dict], key: str = "right") -> float | None:
    """The share of `items` whose `key` is true, rounded; None when there are none."""
    return round(sum(q[key] for q in items) / len(items), 4) if items else None


def run_frozen(make_agent, conversations: list[Conversation], name: str, prefix: str = "frozen") -> dict:
    """Every conversation (frozen or breadth) through fresh agents (a new one at each
    restart); each scored question's outcome under `prefix`_ keys, and all replies."""
    scored, replies = [], []
    for conversation in conversations:
        agent, user = make_agent(), f"{name}-{conversation.name}"
        for turn in conversation.turns:
            if turn.restart:
                agent.close()
                agent = make_agent()
                continue
            reply = say(agent, user, turn.text)
            replies.append({"user": user, "text": turn.text, "reply": reply.text, "notes": reply.memory.get("notes", []),
                            "kind": turn.kind, "expect": list(turn.expect), "source": turn.source,
                            "not_told": reply.memory.get("not_told")})
            if turn.kind:
                # a correction that restated a note was read through it
                read = reply.memory.get("notes", []) + [c for cs in reply.memory.get("corrected", {}).values() for c in cs]
                scored.append({**score(turn, reply.text, read), "long": conversation.long})
        agent.close()

    short = [q for q in scored if not q["long"]]
    long = [q for q in scored if q["long"]]
    asked = [q for q in short if q["kind"] != "not_told"]
    figures = {
        "recall": share([q for q in short if q["kind"] == "recall"]),
        "latest": share([q for q in short if q["kind"] == "latest"]),
        "after_restart": share([q for q in asked if q["after_restart"]]),
        "not_told": share([q for q in short if q["kind"] == "not_told"]),
        "wrong_value": share([q for q in short if q["kind"] == "not_told"], "claims"),
        "notes_hit": share(asked, "hit"),
        "long_right": share([q for q in long if q["kind"] != "not_told"]),
        "long_notes_hit": share([q for q in long if q["kind"] != "not_told"], "hit"),
        "long_repeats": share(long, "repeats"),
        "questions": len(scored),
    }
    return {f"{prefix}_{k}": v for k, v in figures.items()} | {"replies": replies}


def configured(base: Config, changes: dict, max_new_tokens: int) -> Config:
    cfg = copy.deepcopy(base)
    cfg.generation.max_new_tokens = max_new_tokens
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        setattr(getattr(cfg, section), key, value)
    return cfg


def dialogues(seed: int, counts: dict[int, int], people: int | None = None, split: str = "test") -> dict[int, list[Episode]]:
    gen = TeachRecall(split, NAMES_FILE)
    rng = random.Random(seed)
    return {n: [gen.episode(rng, n, corrections=n // 5, people=people) for _ in range(k)] for n, k in counts.items()}


def say(agent: Agent, user: str, text: str):
    reply = None
    for reply in agent.chat_stream(user, text):
        pass
    return reply


def run_dialogue(make_agent, episode: Episode, user: str, *, restart: bool, tally: dict, untold: list[str] = (),
                 lowercase: bool = False) -> None:
    """Teach, (restart,) ask (in lowercase, as people type, with `lowercase`), ask the
    `untold` questions; adds each question's outcome and the stage times of the dialogue's
    own turns to `tally`."""
    agent = make_agent()
    asked = False
    for i, step in enumerate(episode.steps):
        if step.is_question and not asked:
            asked = True
            if restart:
                agent.close()
                agent = make_agent()
        text = step.text.lower() if lowercase and step.is_question else step.text
        reply = say(agent, user, text)
        tally["replies"].append({"user": user, "text": text, "reply": reply.text, "not_told": reply.memory.get("not_told"),
                                 "kind": ("corrected" if step.tag == "corrected" else "recall") if step.is_question else ""})
        for stage, seconds in reply.seconds.items():
            tally["seconds"][stage] = tally["seconds"].get(stage, 0.0) + seconds
        tally["turns"] += 1
        if step.is_question:
            gold = episode.steps[step.support[0] - 1].text
            tally["questions"].append({
                "right": step.answer.lower() in reply.text.lower(),
                "corrected": step.tag == "corrected",
                "hit": gold in reply.memory.get("notes", []),
            })
    values = [s.fact.value.lower() for s in episode.steps if s.fact]
    for text in untold:
        said = say(agent, user, text)
        reply = said.text
        tally["replies"].append({"user": user, "text": text, "reply": reply, "not_told": said.memory.get("not_told"),
                                 "kind": "not_told"})
        claims = any(v in reply.lower() for v in values)
        tally["untold"].append({"wrong": claims, "not_told": not claims and bool(NOT_TOLD.search(reply))})
    agent.close()


def evaluate_system(name: str, cfg: Config, controller: Controller, plan: dict[int, list[Episode]], restart: list[Episode],
                    workdir: Path, untold: dict[int, list[list[str]]], lowercase: bool = False) -> dict:
    tally_by = {}
    db = workdir / f"{name}.db"

    def make_agent() -> Agent:
        return Agent(cfg, controller, Store(db))

    for n, episodes in plan.items():
        tally_by[n] = tally = {"questions": [], "seconds": {}, "turns": 0, "untold": [], "replies": []}
        for k, episode in enumerate(episodes):
            run_dialogue(make_agent, episode, f"{name}-{n}-{k}", restart=False, tally=tally, untold=untold[n][k], lowercase=lowercase)
    restarted = {"questions": [], "seconds": {}, "turns": 0, "untold": [], "replies": []}
    for k, episode in enumerate(restart):
        run_dialogue(make_agent, episode, f"{name}-restart-{k}", restart=True, tally=restarted, lowercase=lowercase)

    everything = [q for t in tally_by.values() for q in t["questions"]]
    untold_asked = [q for t in tally_by.values() for q in t["untold"]]
    seconds: dict[str, float] = {}
    turns = 0
    for t in [*tally_by.values(), restarted]:
        turns += t["turns"]
        for stage, s in t["seconds"].items():
            seconds[stage] = seconds.get(stage, 0.0) + s
    total = sum(seconds.values())
    return {
        **{f"acc_{n}": share(t["questions"]) for n, t in tally_by.items()},
        "latest_value_acc": share([q for q in everything if q["corrected"]]),
        "after_restart_acc": share(restarted["questions"]),
        "notes_hit": share(everything, "hit"),
        "untold_wrong_value": share(untold_asked, "wrong"),
        "untold_not_told": share(untold_asked, "not_told"),
        "memory_time_share": round(sum(seconds.get(s, 0.0) for s in MEMORY_STAGES) / total, 4) if total else None,
        "turn_ms": round(1000 * total / max(1, turns), 1),
        "stage_ms": {s: round(1000 * v / max(1, turns), 2) for s, v in sorted(seconds.items())},
        "questions": len(everything) + len(restarted["questions"]),
        "untold_questions": len(untold_asked),
        "replies": [r for t in [*tally_by.values(), restarted] for r in t["replies"]],
    }


@torch.inference_mode()
def memory_only(cfg: Config, controller: Controller, plan: dict[int, list[Episode]]) -> dict:
    """The neural memory alone: each dialogue written and read by ChatMemory, reads decoded
    among the dialogue's words; exact match of the decoded word with the answer."""
    cfg = copy.deepcopy(cfg)
    cfg.neural_memory.min_confidence = 0.0
    memory = ChatMemory.from_checkpoint(cfg.neural_memory.checkpoint, controller, cfg=cfg.neural_memory,
                                        consolidation=cfg.consolidation)
    result, writes, reads, latest = {}, [], [], []
    for n, episodes in plan.items():
        right = []
        for k, episode in enumerate(episodes):
            user = f"memory-only-{n}-{k}"
            for step, features in zip(episode.steps, memory.featurize([s.text for s in episode.steps])):
                started = time.perf_counter()
                out = memory.step(user, step.text, features, question=step.is_question)
                (reads if step.is_question else writes).append(time.perf_counter() - started)
                if step.is_question:
                    right.append(out.recall.word == step.answer)
                    if step.tag == "corrected":
                        latest.append(right[-1])
        result[f"acc_{n}"] = round(sum(right) / len(right), 4)
    result["latest_value_acc"] = round(sum(latest) / len(latest), 4) if latest else None
    result["write_ms"] = round(1000 * statistics.median(writes), 3)
    result["read_ms"] = round(1000 * statistics.median(reads), 3)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--quick", action="store_true", help="one 3-fact dialogue per system and a 3-fact restart")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated subset of " + ", ".join(SYSTEMS))
    parser.add_argument("--dialogues", default="3,2,1", help="dialogues at 10, 50 and 200 facts")
    parser.add_argument("--restarts", type=int, default=2, help=f"dialogues of {RESTART_FACTS} facts with a restart")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--people", type=int, default=0, help="facts about this many people, several each (0 = someone new each)")
    parser.add_argument("--split", default="test", choices=("val", "test"), help="val to choose settings on, test to report")
    parser.add_argument("--untold", type=int, default=0, help="questions per dialogue about facts never taught (0 = none)")
    parser.add_argument("--lowercase", action="store_true", help="ask every question in lowercase (\"where does oriel live?\")")
    parser.add_argument("--frozen", action="store_true", help="run the frozen hand-written set instead (reported only)")
    parser.add_argument("--handval", action="store_true", help="run the hand-written validation set instead (to choose on)")
    parser.add_argument("--breadth", type=int, default=0,
                        help="run this many generated breadth conversations of --split instead (training/breadth.py)")
    parser.add_argument("--replies", help="write every turn's message and reply, per system, to this JSON file")
    parser.add_argument("--max-new-tokens", type=int, default=48, help="reply length cap (answers come first)")
    args = parser.parse_args()
    base = load_config(args.config)
    controller = Controller.from_config(base.model)
    if args.frozen or args.handval or args.breadth:
        return main_frozen(args, base, controller)
    people = args.people or None
    if args.quick:
        plan = dialogues(args.seed, {3: 1}, people, args.split)
        restart = dialogues(args.seed + 1, {3: 1}, people, args.split)[3]
    else:
        counts = dict(zip(SIZES, (int(x) for x in args.dialogues.split(","))))
        plan = dialogues(args.seed, {n: k for n, k in counts.items() if k > 0}, people, args.split)
        restart = dialogues(args.seed + 1, {RESTART_FACTS: args.restarts}, people, args.split)[RESTART_FACTS]
    gen = TeachRecall(args.split, NAMES_FILE)
    rng = random.Random(args.seed + 2)  # its own, so the dialogues are the same with and without --untold
    untold = {n: [gen.untold_questions(e, rng, args.untold) for e in episodes] for n, episodes in plan.items()}
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    started = time.perf_counter()
    results, replies = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            t0 = time.perf_counter()
            results[name] = evaluate_system(name, configured(base, SYSTEMS[name], args.max_new_tokens), controller, plan, restart, Path(tmp), untold,
                                           args.lowercase)
            replies[name] = results[name].pop("replies")
            results[name] = {**{f"acc_{n}": None for n in SIZES}, **results[name]}  # sizes not run stay null
            print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if args.replies:
        Path(args.replies).write_text(json.dumps(replies, indent=1))
    alone = memory_only(base, controller, plan) if base.neural_memory.checkpoint else {}

    sizes = [f"acc_{n}" for n in plan]
    print(f"Teach-and-recall through the chatbot ({', '.join(f'{len(e)} dialogue(s) of {n} facts' for n, e in plan.items())}; "
          f"{len(restart)} restart dialogue(s) of {RESTART_FACTS} facts{f'; about {people} people each' if people else ''}); controller: {base.model.source} "
          f"{base.model.package}{' + adapter' if base.model.adapter else ''}; {args.split} split; torch threads {torch.get_num_threads()}")
    header = f"| system | {' | '.join(sizes)} | latest value | after restart | notes hit | memory share | ms/turn |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    for name, r in results.items():
        print(f"| {name} | {' | '.join(pct(r[s]) for s in sizes)} | {pct(r['latest_value_acc'])} | {pct(r['after_restart_acc'])} "
              f"| {pct(r['notes_hit'])} | {pct(r['memory_time_share'])} | {r['turn_ms']:.0f} |")
    print("\nms per turn by stage:")
    stages = sorted({s for r in results.values() for s in r["stage_ms"]})
    print("| system | " + " | ".join(stages) + " |")
    print("|" + "---|" * (len(stages) + 1))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(f"{r['stage_ms'].get(s, 0):.1f}" for s in stages) + " |")
    if alone:
        print("\nneural memory alone (no LM; decoded among each dialogue's words): "
              + ", ".join(f"{k} {pct(v) if k.startswith(('acc', 'latest')) else v}" for k, v in alone.items()))
    if args.untold:
        print(f"\nasked about facts never taught ({args.untold} a dialogue):")
        print("| system | questions | wrong value claimed | says not told |")
        print("|---|---|---|---|")
        for name, r in results.items():
            print(f"| {name} | {r['untold_questions']} | {pct(r['untold_wrong_value'])} | {pct(r['untold_not_told'])} |")
    print(f"total {time.perf_counter() - started:.0f} s")
    print("RESULT " + json.dumps({**results, "memory_only_decoding": alone, "people": people, "quick": args.quick}))


def main_frozen(args: argparse.Namespace, base: Config, controller: Controller) -> None:
    """The frozen set (reported only), the hand-written validation set (--handval) or, with
    --breadth, generated broad conversations of --split."""
    prefix = "breadth" if args.breadth else "handval" if args.handval else "frozen"
    if args.breadth:
        conversations = breadth_conversations(args.split, NAMES_FILE, 1 if args.quick else args.breadth, args.seed)
    else:
        found = load_frozen(HANDVAL_DIR if args.handval else FROZEN_DIR)
        conversations = found[:1] if args.quick else found  # quick: the first short conversation
    names = [s.strip() for s in args.systems.split(",") if s.strip()]
    started, results, replies = time.perf_counter(), {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            cfg, db = configured(base, SYSTEMS[name], args.max_new_tokens), Path(tmp) / f"{name}.db"
            t0 = time.perf_counter()
            results[name] = run_frozen(lambda: Agent(cfg, controller, Store(db)), conversations, name, prefix)
            replies[name] = results[name].pop("replies")
            print(f"  {name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    if args.replies:
        Path(args.replies).write_text(json.dumps(replies, indent=1))

    def pct(x: float | None) -> str:
        return "-" if x is None else f"{100 * x:.1f}%"

    keys = [f"{prefix}_{k}" for k in ("recall", "latest", "after_restart", "not_told", "wrong_value", "notes_hit")]
    if not args.breadth:
        keys += [f"{prefix}_long_right", f"{prefix}_long_notes_hit", f"{prefix}_long_repeats"]
    what = {"breadth": f"Generated breadth conversations, {args.split} split, seed {args.seed}",
            "handval": "Hand-written validation set", "frozen": "Frozen hand-written set"}[prefix]
    what += f" ({len(conversations)} conversations{', reported only' if prefix == 'frozen' else ''})"
    print(f"{what}; controller: {base.model.source} "
          f"{base.model.package}{' + adapter' if base.model.adapter else ''}; replies capped at {args.max_new_tokens} tokens")
    print("| system | " + " | ".join(k.removeprefix(prefix + "_") for k in keys) + " | questions |")
    print("|" + "---|" * (len(keys) + 2))
    for name, r in results.items():
        print(f"| {name} | " + " | ".join(pct(r[k]) for k in keys) + f" | {r[prefix + '_questions']} |")
    print(f"total {time.perf_counter() - started:.0f} s")
    print("RESULT " + json.dumps({**results, "quick": args.quick}))


if __name__ == "__main__":
    main()
