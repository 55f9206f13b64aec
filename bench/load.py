"""Concurrent users over HTTP: N clients chat with one app for a bounded time; errors and leaks counted.

    python bench/load.py [--quick] [--config configs/default.yaml] [--users 8] [--seconds 120]

Starts app.py on a free loopback port with a fresh SQLite file, then runs `--users`
gradio clients at once, each its own user, for `--seconds` (a turn under way at the
end is finished). Every user teaches facts holding secrets of their own (a code and
an invented name no other user has) and asks about them, so a leak is visible: after
the run, no user's replies, history or exported memories may hold another user's
secrets. Reported: turns, turns/s, latency p50/p95 of whole replies, errors (a call
that raised, or a turn missing from the user's stored history) and leaks.
The last line is `RESULT {json}`.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: only the model's thread runs a thread team (chatbot/__init__.py)

import argparse
import json
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from gradio_client import Client

ROOT = Path(__file__).resolve().parent.parent
SYLLABLES = ["ka", "lo", "mi", "ren", "tus", "va", "zel", "qui", "dor", "phe", "nax", "bri"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(config: str, db: Path, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen([sys.executable, "app.py", "--config", config, "--db", str(db), "--port", str(port)],
                            cwd=ROOT, stdout=log.open("w"), stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 300
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited: {log.read_text()[-2000:]}")
        try:
            Client(url, verbose=False)
            return proc, url
        except Exception:
            time.sleep(1)
    proc.terminate()
    raise TimeoutError(log.read_text()[-2000:])


def secrets_of(k: int) -> dict[str, str]:
    """A user's own code and invented name; no two users share one."""
    rng = random.Random(k)
    name = "".join(rng.choice(SYLLABLES) for _ in range(3)).capitalize() + f"{k:02d}x"
    return {"code": f"{7_000_000 + 7919 * k}", "name": name}


def script(secrets: dict[str, str]) -> list[str]:
    return [
        f"The code of my locker is {secrets['code']}.",
        f"My cousin {secrets['name']} lives by the harbour.",
        "How are you today?",
        "What is the code of my locker?",
        f"Where does {secrets['name']} live?",
        "Tell me a short fact about the sea.",
    ]


def run_user(url: str, user: str, lines: list[str], until: float, out: dict) -> None:
    client = Client(url, verbose=False)
    i = 0
    while time.time() < until:
        text = lines[i % len(lines)]
        started = time.perf_counter()
        try:
            reply = client.predict(user, text, api_name="/chat")
            out["latencies"].append(time.perf_counter() - started)
            out["sent"].append(text)
            out["replies"].append(reply)
        except Exception as exc:  # noqa: BLE001 (counted and shown)
            out["errors"].append(f"{type(exc).__name__}: {exc}")
        i += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    parser.add_argument("--quick", action="store_true", help="tiny model, 4 users, 30 s")
    parser.add_argument("--users", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=120.0)
    args = parser.parse_args()
    if args.quick:
        args.config, args.users, args.seconds = str(ROOT / "configs" / "tiny.yaml"), 4, 30.0
    users = {f"user{k:02d}": secrets_of(k) for k in range(args.users)}
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = start_app(args.config, Path(tmp) / "load.db", Path(tmp) / "app.log")
        try:
            results = {u: {"latencies": [], "sent": [], "replies": [], "errors": []} for u in users}
            until = time.time() + args.seconds
            started = time.perf_counter()
            threads = [threading.Thread(target=run_user, args=(url, u, script(s), until, results[u])) for u, s in users.items()]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            elapsed = time.perf_counter() - started
            client = Client(url, verbose=False)
            leaks, missing = [], 0
            for user, r in results.items():
                history = client.predict(user, api_name="/history")
                memory = json.dumps(client.predict(user, api_name="/memory"))
                missing += max(0, len(r["sent"]) - len(history))
                seen = json.dumps(history) + memory + json.dumps(r["replies"])
                for other, s in users.items():
                    if other != user:
                        leaks += [f"{other}'s {k} in {user}'s turns" for k, v in s.items() if v in seen]
        finally:
            proc.terminate()
            proc.wait(timeout=60)

    latencies = [x for r in results.values() for x in r["latencies"]]
    errors = [e for r in results.values() for e in r["errors"]]
    turns = len(latencies)
    figures = {
        "users": args.users, "seconds": round(elapsed, 1), "turns": turns, "turns_per_s": round(turns / elapsed, 3),
        "p50_s": round(statistics.median(latencies), 3) if latencies else None,
        "p95_s": round(statistics.quantiles(latencies, n=20)[-1], 3) if len(latencies) >= 2 else None,
        "errors": len(errors) + missing, "leaks": len(leaks), "quick": args.quick,
    }
    print(f"{args.users} users chatting at once for {args.seconds:.0f} s over HTTP ({Path(args.config).name})")
    print("| turns | turns/s | p50 s | p95 s | errors | leaks |")
    print("|---|---|---|---|---|---|")
    print(f"| {turns} | {figures['turns_per_s']} | {figures['p50_s']} | {figures['p95_s']} | {figures['errors']} | {figures['leaks']} |")
    for line in (errors + leaks)[:10]:
        print("  " + line)
    print("RESULT " + json.dumps(figures))


if __name__ == "__main__":
    main()
