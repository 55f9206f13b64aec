"""How the Memoria engram store scales: remind + adjust latency per turn, memory, disk.

Run: .venv/bin/python bench/memoria_scale.py [--quick]

For 1k, 10k and 100k stored engrams (hidden size 576, SmolLM2-135M's width) a
store is filled by running the algorithm itself, 64 new engrams per turn, each
new engram given a lifespan long enough to stay. Then chat-like turns are timed:
8 new engrams (sentences), remind, lifespan deltas from a random attention
signal via `lifespan_delta` (scale 8), adjust. New engrams of the timed turns
live 9 turns unless reminded, so engrams are forgotten as they are in chat.
Settings are the paper's GPT-2 ones: 50 STM + 50 LTM reminded, STM capacity
400, search depth 10, initial lifespan 9; links capped at 64 per engram.

The reference (memoria-pytorch 1.1.0) runs the same protocol at the sizes its
dense [N, N] co-fire matrix allows here; larger sizes are listed with the memory
one copy of that matrix would take (a turn makes several copies).

Disk: the filled store is saved to a real SQLite file through storage.Store;
bytes per engram = file size / engrams. Each timed turn is then saved in its own
transaction (only the rows that changed), timed apart from remind + adjust.

The last line is `RESULT {json}`: remind_adjust_ms (engram count -> median ms),
bytes_per_engram (at the largest size), reference_remind_adjust_ms.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import memoria as reference
import torch

from memory.memoria import Memoria, lifespan_delta
from storage import Store
from storage.engrams import load_engrams, save_engrams

HIDDEN = 576
PAPER = dict(num_reminded_stm=50, stm_capacity=400, ltm_search_depth=10, initial_lifespan=9, num_final_ltms=50)
FILL_WIDTH = 64  # engrams per filling turn
TURN_WIDTH = 8  # engrams per timed turn
STAY = 1e9  # lifespan gain that keeps a filling engram for the whole run
SCALE = 8.0  # the paper's lifespan extend scale
SIZES = [1_000, 10_000, 100_000]


def reference_nbytes(ref: reference.Memoria) -> int:
    """Bytes of the reference's engram state (its per-turn temporaries come on top)."""
    engrams = ref.engrams
    return sum(t.nbytes for t in (engrams.data, engrams.induce_counts, engrams.engrams_types, engrams.lifespan))


def attention(generator: torch.Generator, count: int) -> torch.Tensor:
    """A stand-in for the reply's attention to `count` reminded engrams: [count] mass."""
    return torch.rand(count, generator=generator) ** 4


def fill_ours(memoria: Memoria, size: int, generator: torch.Generator) -> None:
    while memoria.size("u") < size:
        width = min(FILL_WIDTH, size - memoria.size("u"))
        new = memoria.add_working_memory(torch.randn(1, width, HIDDEN, generator=generator), user="u")
        _, indices = memoria.remind()
        gains = lifespan_delta(attention(generator, indices.shape[1]), SCALE)[None]
        memoria.adjust_lifespan_and_memories(
            torch.cat([indices, new], dim=1), torch.cat([gains, torch.full(new.shape, STAY)], dim=1)
        )


def fill_reference(ref: reference.Memoria, size: int, generator: torch.Generator) -> None:
    while len(ref.engrams) < size:
        width = min(FILL_WIDTH, size - len(ref.engrams))
        ref.add_working_memory(torch.randn(1, width, HIDDEN, generator=generator))
        _, positions = ref.remind()
        new = torch.arange(len(ref.engrams) - width, len(ref.engrams))[None]  # newest positions
        gains = lifespan_delta(attention(generator, positions.shape[1]), SCALE)[None]
        ref.adjust_lifespan_and_memories(
            torch.cat([positions, new], dim=1), torch.cat([gains, torch.full(new.shape, STAY)], dim=1)
        )


def time_turns(run_turn, turns: int, warmup: int) -> list[float]:
    times = []
    for turn in range(warmup + turns):
        elapsed = run_turn()
        if turn >= warmup:
            times.append(elapsed)
    return times


def bench_ours(size: int, turns: int, warmup: int, folder: Path) -> dict:
    generator = torch.Generator().manual_seed(size)
    memoria = Memoria(**PAPER)
    start = time.perf_counter()
    fill_ours(memoria, size, generator)
    fill_s = time.perf_counter() - start
    ram = memoria.nbytes("u") / size
    sample = memoria.engrams("u", range(0, size, max(1, size // 1000)))  # nothing is forgotten while filling
    links = sum(len(e.links) for e in sample) / len(sample)

    store = Store(folder / f"memoria-{size}.db")
    start = time.perf_counter()
    with store.transaction() as db:
        save_engrams(db, memoria, "u")
    save_all_s = time.perf_counter() - start
    store.db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    disk = sum(p.stat().st_size for p in folder.glob(f"memoria-{size}.db*")) / size

    saves, rows = [], []

    def turn() -> float:
        memoria.add_working_memory(torch.randn(1, TURN_WIDTH, HIDDEN, generator=generator), user="u")
        mass = attention(generator, 2 * PAPER["num_final_ltms"])  # drawn before timing
        start = time.perf_counter()
        _, indices = memoria.remind()
        memoria.adjust_lifespan_and_memories(indices, lifespan_delta(mass[: indices.shape[1]], SCALE)[None])
        elapsed = time.perf_counter() - start
        start = time.perf_counter()
        with store.transaction() as db:
            rows.append(save_engrams(db, memoria, "u"))
        saves.append(time.perf_counter() - start)
        return elapsed

    times = time_turns(turn, turns, warmup)
    store.close()
    start = time.perf_counter()
    reopened = Store(folder / f"memoria-{size}.db")
    restored = Memoria(**PAPER)
    load_engrams(reopened.db, restored, "u")
    load_s = time.perf_counter() - start
    assert restored.size("u") == memoria.size("u")
    reopened.close()
    return dict(
        times=times,
        fill_s=fill_s,
        ram=ram,
        links=links,
        disk=disk,
        save_all_s=save_all_s,
        save_ms=1e3 * statistics.median(saves[warmup:]),
        rows=statistics.median(rows[warmup:]),
        load_s=load_s,
        final=memoria.size("u"),
    )


def bench_reference(size: int, turns: int, warmup: int) -> dict:
    generator = torch.Generator().manual_seed(size)
    ref = reference.Memoria(**PAPER)
    fill_reference(ref, size, generator)
    ram = reference_nbytes(ref) / size

    def turn() -> float:
        ref.add_working_memory(torch.randn(1, TURN_WIDTH, HIDDEN, generator=generator))
        mass = attention(generator, 4 * PAPER["num_final_ltms"])
        start = time.perf_counter()
        _, positions = ref.remind()
        ref.adjust_lifespan_and_memories(positions, lifespan_delta(mass[: positions.shape[1]], SCALE)[None])
        return time.perf_counter() - start

    return dict(times=time_turns(turn, turns, warmup), ram=ram)


def ms(times: list[float]) -> tuple[float, float]:
    ordered = sorted(times)
    return 1e3 * statistics.median(ordered), 1e3 * ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer timed turns, the reference at 1k only (< 1 minute)")
    args = parser.parse_args()
    turns, warmup = (20, 3) if args.quick else (100, 10)
    # a reference turn takes about a second at 1k engrams
    reference_turns, reference_warmup = (5, 1) if args.quick else (10, 1)
    reference_sizes = [1_000] if args.quick else [1_000, 2_000, 4_000]
    torch.set_num_threads(min(2, torch.get_num_threads()))

    print(
        f"Memoria scale: hidden {HIDDEN}, {TURN_WIDTH} new engrams per turn, {turns} timed turns after {warmup} "
        f"warm-up ({reference_turns} after {reference_warmup} for the reference)"
    )
    print(f"settings {PAPER}, max_links 64; CPU threads {torch.get_num_threads()}")
    ours, theirs = {}, {}
    with tempfile.TemporaryDirectory() as tmp:
        for size in sorted(set(SIZES) | set(reference_sizes)):
            ours[size] = bench_ours(size, turns, warmup, Path(tmp))
            r = ours[size]
            print(
                f"  ours {size:>7,}: filled in {r['fill_s']:.1f}s, saved in {r['save_all_s']:.1f}s, "
                f"loaded in {r['load_s']:.1f}s; {r['final']:,} engrams after the timed turns",
                flush=True,
            )
    for size in reference_sizes:
        theirs[size] = bench_reference(size, reference_turns, reference_warmup)
        print(f"  reference {size:>7,}: done", flush=True)

    print()
    header = (
        f"| {'engrams':>8} | {'ours ms median / p95':>20} | {'reference ms median / p95':>28} | {'ours RAM B/engram':>17} "
        f"| {'ref RAM B/engram':>16} | {'links/engram':>12} | {'disk B/engram':>13} | {'save ms/turn':>12} | {'rows/turn':>9} |"
    )
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    for size, o in sorted(ours.items()):
        t = theirs.get(size)
        if t:
            ref_ms = "{:.1f} / {:.1f}".format(*ms(t["times"]))
            ref_ram = f"{t['ram']:,.0f}"
        else:
            ref_ms = f"skipped: N^2 int32 = {size * size * 4 / 2**30:.2g} GiB"
            ref_ram = "-"
        cells = [
            f"{size:>8,}",
            "{:>20}".format("{:.2f} / {:.2f}".format(*ms(o["times"]))),
            f"{ref_ms:>28}",
            f"{o['ram']:>17,.0f}",
            f"{ref_ram:>16}",
            f"{o['links']:>12.1f}",
            f"{o['disk']:>13,.0f}",
            f"{o['save_ms']:>12.2f}",
            f"{o['rows']:>9.0f}",
        ]
        print("| " + " | ".join(cells) + " |")
    print(
        "\nreference: dense co-fire counts [N, N] int32, copied several times per turn; run up to "
        f"{max(reference_sizes):,} engrams here{' (--quick: 1k only)' if args.quick else ''}.\n"
        "RAM: the engram state's arrays per engram (ours: Memoria.nbytes, incl. spare capacity; reference:\n"
        "its vectors, dense co-fire counts, types, lifespans). links/engram: live links kept (the cap is 64).\n"
        "disk: SQLite file (WAL checkpointed) after saving the filled store, per engram."
    )
    result = {
        "remind_adjust_ms": {str(size): round(ms(r["times"])[0], 3) for size, r in sorted(ours.items())},
        "bytes_per_engram": round(ours[max(SIZES)]["disk"], 1),
        "reference_remind_adjust_ms": {str(size): round(ms(r["times"])[0], 3) for size, r in theirs.items()},
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
