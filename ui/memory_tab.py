"""The Memory tab and the chat's memory notes: a user's engrams, their strongest co-fire links,
the neural memory's writes and reads, and what memory contributed to one reply."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from chatbot.views import MemoryView
from memory.chat_memory import WriteRecord
from memory.engram_state import Engram

ENGRAM_COLUMNS = ["id", "type", "text", "lifespan", "age", "fire count", "links", "corrected"]
WRITE_COLUMNS = ["id", "text", "value it points at", "beta", "status"]
READ_COLUMNS = ["question", "recalled word", "confidence", "from"]


def engram_rows(engrams: Sequence[Engram], corrected: Mapping[int, tuple[int, str]] | None = None) -> list[list]:
    """ENGRAM_COLUMNS rows, newest first; a statement a later one `corrected` shows what a note of it now says."""
    corrected = corrected or {}

    def correction(e: Engram) -> str:
        if e.id not in corrected:
            return ""
        by, now = corrected[e.id]
        return f"by #{by}: {now}"

    return [
        [e.id, e.type.name.lower(), e.text or "", round(e.lifespan, 1), e.age, e.fire_count, len(e.links), correction(e)]
        for e in sorted(engrams, key=lambda e: -e.id)
    ]


def write_rows(writes: Sequence[WriteRecord]) -> list[list]:
    """WRITE_COLUMNS rows, newest first."""

    def status(w: WriteRecord) -> str:
        if w.forgotten:
            return "forgotten"
        return f"superseded by #{w.superseded_by}" if w.superseded_by is not None else "live"

    return [[w.id, w.text, w.value, round(float(w.beta.mean()), 3), status(w)] for w in reversed(writes)]


def read_rows(reads: Sequence[dict]) -> list[list]:
    """READ_COLUMNS rows of recent reads (newest first, as given)."""
    return [[r["question"], r["word"] or "(nothing recalled)", r["confidence"], r["source"] or ""] for r in reads]


def links_figure(engrams: Sequence[Engram], *, top: int = 16) -> Figure | None:
    """The co-fire counts among the `top` most linked engrams, as a matrix; None without links."""
    linked = sorted((e for e in engrams if e.links), key=lambda e: (-sum(e.links.values()), e.id))[:top]
    if len(linked) < 2:
        return None
    linked.sort(key=lambda e: e.id)
    index = {e.id: i for i, e in enumerate(linked)}
    counts = np.zeros((len(linked), len(linked)))
    for e in linked:
        for partner, count in e.links.items():
            if partner in index:
                counts[index[e.id], index[partner]] = count
    fig = Figure(figsize=(7.5, 6))  # not pyplot: no global figure state, no display backend
    ax = fig.subplots()
    image = ax.imshow(counts, cmap="Blues")
    labels = [f"#{e.id} {(e.text or '')[:28]}" for e in linked]
    ax.set_xticks(range(len(linked)), [f"#{e.id}" for e in linked], rotation=90, fontsize=7)
    ax.set_yticks(range(len(linked)), labels, fontsize=7)
    ax.set_title("co-fire counts (Hebbian links) among the most linked engrams", fontsize=9)
    fig.colorbar(image, ax=ax, shrink=0.7)
    fig.tight_layout()
    return fig


def summaries(view: MemoryView, user: str) -> tuple[str, str]:
    """Markdown lines on the engram store and the neural memory."""
    types = Counter(e.type.name.lower() for e in view.engrams)
    engrams = (
        f"**{user}**: {len(view.engrams)} engrams in the engram store "
        f"({types['working']} working, {types['shortterm']} short-term, {types['longterm']} long-term; "
        f"{len(view.corrected)} corrected by later statements)"
        if view.engram_store else "The engram store (Memoria) is off in this config."
    )
    stats = view.stats
    neural = (
        f"**Neural memory:** {stats['writes']} writes ({stats['live']} live, {stats['superseded']} superseded by "
        f"corrections, {stats['forgotten']} forgotten), {stats['replays']} replays, mean beta of live writes "
        f"{stats['mean_beta']:.2f}" if stats else "**Neural memory:** no writes yet (or off in this config)."
    )
    return engrams, neural


def memory_markdown(memory: dict) -> str:
    """What memory contributed to one reply, as Markdown ("" when it contributed nothing)."""
    parts = []
    if memory.get("notes"):
        corrected = memory.get("corrected", {})
        parts.append("**Put in the prompt** (oldest first):\n" + "\n".join(
            f"- {n}" + "".join(f"\n  - as corrected by: {c}" for c in corrected.get(n, [])) for n in memory["notes"]))
    for r in memory.get("recall", []):
        if r["word"]:
            found = f"**{r['word']}** (p = {r['confidence']:.2f})" + (f", from \"{r['source']}\"" if r.get("source") else "")
        else:
            found = f"nothing recalled (best p = {r['confidence']:.2f})"
        used = f"; used: {r['used']}" if r.get("used") and r["word"] else ""
        parts.append(f"**Neural memory read** for \"{r['question']}\": {found}{used}")
    told = memory.get("not_told")
    if told:  # the probe's reading; it changes the reply only above generation.not_told_above
        did = ", so the reply says it was not told" if told["replied"] else ""
        parts.append(f"**Does a note answer?** p(none does) = {told['probability']:.2f}{did}")
    made_up = memory.get("made_up")
    if made_up:  # chatbot/grounding.py
        values = ", ".join(made_up["values"])
        parts.append(f"**Not from memory:** the reply was \"{made_up['reply']}\", but you never said {values}; "
                     "so it says it was not told")
    wrong = memory.get("wrong_kind")
    if wrong:  # chatbot/grounding.py
        parts.append(f"**Not an answer:** the reply was \"{wrong['reply']}\", which holds no value of the kind asked for "
                     "(a time, a date, a quantity); so it says it was not told")
    for w in memory.get("writes", []):
        parts.append(f"**Written to the neural memory:** \"{w['text']}\" (points at \"{w['value']}\", beta {w['beta']:.2f})")
    reminded = memory.get("reminded", [])
    if reminded:
        lines = []
        for e in reminded:
            used = f"; attention {e['attention']:.3f}, lifespan +{e['lifespan_gain']:.1f}" if "attention" in e else ""
            lines.append(f"- #{e['id']} {e['type']}: {e['text']}{used}")
        parts.append("**Reminded engrams** (Memoria):\n" + "\n".join(lines))
    for w in memory.get("superseded", []):
        parts.append(f"**Superseded** (a correction overwrote it): \"{w['text']}\"")
    if memory.get("forgotten"):
        parts.append("**Forgotten** at your request:\n" + "\n".join(f"- {t}" for t in memory["forgotten"]))
    if memory.get("replayed"):
        parts.append(f"**Consolidated:** {memory['replayed']} long-term memories replayed into the neural memory")
    return "\n\n".join(parts)
