"""What the Memory tab shows: a user's engrams, their strongest co-fire links, the neural memory's writes and reads."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from matplotlib.figure import Figure

from .memoria import Engram
from .neural_chat import WriteRecord

ENGRAM_COLUMNS = ["id", "type", "text", "lifespan", "age", "fire count", "links"]
WRITE_COLUMNS = ["id", "text", "value it points at", "beta", "status"]
READ_COLUMNS = ["question", "recalled word", "confidence", "from"]


def engram_rows(engrams: Sequence[Engram]) -> list[list]:
    """ENGRAM_COLUMNS rows, newest first."""
    return [
        [e.id, e.type.name.lower(), e.text or "", round(e.lifespan, 1), e.age, e.fire_count, len(e.links)]
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
    return [[r["question"], r["word"] or "(nothing sure)", r["confidence"], r["source"] or ""] for r in reads]


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
