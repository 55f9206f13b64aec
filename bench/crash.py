"""kill -9 during turns loses nothing: a chatting process is SIGKILLed at random moments, then checked.

    python bench/crash.py [--quick] [--trials 100] [--seed 0] [--spawn] [--keep]

Each trial starts a child process on one shared SQLite file (configs/tiny.yaml, the
vocabulary and both memories on, as in the app) that chats as one user, the same
user in every trial so the state accumulates. The child prints a line before each
turn (START), when a transaction begins and commits (TXN, COMMITTED), and after each
COMPLETED turn (DONE and the message), so this process knows what the child was told
was stored. After the child's first turn, this process sends SIGKILL at a random
moment (seeded): half the trials at a time drawn over the next few turns ("anytime"),
half a few milliseconds after a TXN line, so the kill lands inside the turn's save.

After every kill the database is opened here with plain sqlite3 and checked:
  * PRAGMA integrity_check is ok and foreign_key_check finds nothing;
  * every turn a child reported completed is stored, exactly once (a lost turn);
  * the stored rows agree (a corruption otherwise): each stored turn has exactly one
    engram of its sentence, each statement exactly one neural write (naming that
    engram), no write or engram belongs to a turn that is not stored, write ids run
    0..n-1, the neural snapshot counts the writes in the log, and no stored turn was
    never started; a stored turn that was not reported is allowed only for the turn
    the kill interrupted (it committed, and the kill came before its DONE line);
then the next trial's child, a fresh Agent, loads the user and chats one turn (the
reload check; a failed reload otherwise), and after the last kill one more child
does only that. Engrams get an initial lifespan of 1e6 turns here, so none expires
during the run and a missing engram can only be a lost one.

Children are forked from this process after it loaded the model once (default), so a
trial costs a fork, a fresh Agent over the database and the turns; with --spawn each
child is a new interpreter that imports and loads everything itself, the cost of a
real restart. The table gives both costs. kill -9 kills the process, not the machine:
what the kernel holds is written either way, so this tests the transactions' atomicity
against a process crash, not durability against power loss.

The last line is `RESULT {json}` with trials, killed_mid_turn, corruptions, lost_turns,
failed_reloads and seconds (and a few more counts).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import select
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "tiny.yaml"
USER = "crash"
STARTUP_TIMEOUT_S = 180.0  # a spawned child imports torch and loads two models
TURN_TIMEOUT_S = 60.0


def message(trial: int, i: int) -> str:
    """The child's i-th message in `trial`: unique, one sentence; every fourth a question (no neural write)."""
    if i % 4 == 3:
        return f"How many parrots live in cage {trial}-{i - 1}?"
    return f"Crashwort keeps {3 + i} parrots in cage {trial}-{i}."


# ---- the child ------------------------------------------------------------------------------------------


def agent_parts(db: Path):
    """The config, model and memories a child builds its Agent from (forked children share one load)."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")  # tokenizers' threads do not survive a fork
    import torch

    torch.set_num_threads(1)  # no OpenMP pool in the process that forks (a forked pool hangs)
    from chatbot import Controller, load_config
    from chatbot.memories import Memories

    cfg = load_config(CONFIG)
    if not Path(cfg.model.cache_dir).is_absolute():
        cfg.model.cache_dir = str(ROOT / cfg.model.cache_dir)
    cfg.model.threads = 1
    cfg.store.path = str(db)
    cfg.memoria.initial_lifespan = 1e6  # nothing expires: a missing engram is a lost one
    controller = Controller.from_config(cfg.model)
    return cfg, controller, Memories(cfg, controller)


def child(db: Path, trial: int, turns: int | None, out_fd: int, parts=None) -> int:
    """Chat as USER until killed (or `turns` turns), reporting each step on `out_fd`."""
    started = time.perf_counter()

    def emit(line: str) -> None:
        os.write(out_fd, (line + "\n").encode())

    try:
        cfg, controller, memories = parts if parts is not None else agent_parts(db)
        from chatbot import Agent
        from storage import Store

        transaction = Store.transaction

        @contextlib.contextmanager
        def reported(self):
            emit("TXN")
            with transaction(self) as conn:
                yield conn
            emit("COMMITTED")

        Store.transaction = reported
        agent = Agent(cfg, controller, Store(db, busy_timeout_s=cfg.store.busy_timeout_s), memories=memories)
        emit(f"READY {time.perf_counter() - started:.4f}")
        i = 0
        while turns is None or i < turns:
            text = message(trial, i)
            emit(f"START {i} {text}")
            agent.chat(USER, text)
            emit(f"DONE {i} {text}")
            i += 1
        agent.close()
        return 0
    except BaseException as exc:  # noqa: BLE001 (the parent reads the line; the traceback goes to the log)
        traceback.print_exc()
        emit(f"ERROR {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}")
        return 1


# ---- the parent -----------------------------------------------------------------------------------------


class Child:
    """A child process and the lines it printed, each with the time it arrived."""

    def __init__(self, pid: int, fd: int, proc: subprocess.Popen | None = None) -> None:
        self.pid, self.fd, self.proc = pid, fd, proc
        self.started = time.perf_counter()
        self.lines: list[tuple[float, str]] = []
        self.buffer = b""
        self.eof = False
        self.status: int | None = None

    def read(self, until: float) -> list[str]:
        """Lines that arrive before time `until` (perf_counter); stops at the first batch."""
        new: list[str] = []
        while not new and not self.eof:
            wait = until - time.perf_counter()
            if wait <= 0:
                break
            ready, _, _ = select.select([self.fd], [], [], wait)
            if not ready:
                break
            data = os.read(self.fd, 65536)
            if not data:
                self.eof = True
                data = b"\n" if self.buffer else b""
            self.buffer += data
            *complete, self.buffer = self.buffer.split(b"\n")
            now = time.perf_counter()
            for raw in complete:
                line = raw.decode(errors="replace")
                self.lines.append((now, line))
                new.append(line)
        return new

    def wait_for(self, prefix: tuple[str, ...], timeout: float, *, after: int = 0, count: int = 1) -> int | None:
        """Index in `lines` of the `count`-th line from `after` on starting with `prefix`; None on EOF or timeout."""
        deadline = time.perf_counter() + timeout
        while True:
            hits = [k for k in range(after, len(self.lines)) if self.lines[k][1].startswith(prefix)]
            if len(hits) >= count:
                return hits[count - 1]
            if self.eof or time.perf_counter() >= deadline:
                return None
            self.read(deadline)

    def drain(self, until: float) -> None:
        while not self.eof and time.perf_counter() < until:
            self.read(until)

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)

    def reap(self, timeout: float = 30.0) -> int | None:
        """Read to EOF and collect the exit status (negative: the signal that ended it)."""
        self.drain(time.perf_counter() + timeout)
        if self.proc is not None:
            try:
                self.status = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                self.status = self.proc.wait()
            self.proc.stdout.close()
        else:
            _, status = os.waitpid(self.pid, 0)
            self.status = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
            os.close(self.fd)
        return self.status

    def texts(self, kind: str) -> list[str]:
        """The messages of the child's START or DONE lines, in order."""
        return [line.split(" ", 2)[2] for _, line in self.lines if line.startswith(kind + " ")]

    def time_of(self, prefix: str) -> float | None:
        return next((t for t, line in self.lines if line.startswith(prefix)), None)


def start_fork(parts, db: Path, trial: int, turns: int | None, log: Path) -> Child:
    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into the parent's code
        code = 1
        try:
            os.close(read_end)
            err = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            os.dup2(err, 2)
            os.dup2(write_end, 1)
            code = child(db, trial, turns, 1, parts)
        finally:
            os._exit(code)
    os.close(write_end)
    return Child(pid, read_end)


def start_spawn(db: Path, trial: int, turns: int | None, log: Path) -> Child:
    args = [sys.executable, str(Path(__file__).resolve()), "--child", "--db", str(db), "--trial", str(trial)]
    if turns is not None:
        args += ["--turns", str(turns)]
    with open(log, "a") as err:
        proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=err, cwd=ROOT)
    return Child(proc.pid, proc.stdout.fileno(), proc)


@dataclass
class Check:
    """What one look at the database found."""

    problems: list[str] = field(default_factory=list)  # integrity and consistency failures: corruption
    lost: list[str] = field(default_factory=list)  # reported completed, not stored
    stored: list[str] = field(default_factory=list)  # the user's messages stored, oldest first


def check(db: Path, completed: set[str], started: set[str]) -> Check:
    """Open the database and check it (see the module docstring)."""
    found = Check()
    conn = sqlite3.connect(db, timeout=30)
    try:
        integrity = [row[0] for row in conn.execute("PRAGMA integrity_check")]
        if integrity != ["ok"]:
            found.problems.append(f"integrity_check: {integrity[:5]}")
            return found
        fk = conn.execute("PRAGMA foreign_key_check").fetchall()
        if fk:
            found.problems.append(f"foreign_key_check: {fk[:5]}")
        user = conn.execute("SELECT id FROM users WHERE name = ?", [USER]).fetchone()
        if user is None:
            found.lost = sorted(completed)
            return found
        uid = user[0]
        turns = conn.execute(
            "SELECT t.id, t.user_text FROM turns t JOIN conversations c ON c.id = t.conversation_id WHERE c.user_id = ? ORDER BY t.id",
            [uid],
        ).fetchall()
        writes = conn.execute("SELECT id, turn, engram, text FROM neural_writes WHERE user_id = ? ORDER BY id", [uid]).fetchall()
        engrams = conn.execute("SELECT id, turn, text FROM engrams WHERE user_id = ? ORDER BY id", [uid]).fetchall()
        snapshot = conn.execute("SELECT writes FROM neural_memory WHERE user_id = ?", [uid]).fetchone()
        counters = conn.execute("SELECT next_id FROM engram_counters WHERE user_id = ?", [uid]).fetchone()
    finally:
        conn.close()

    found.stored = [text for _, text in turns]
    times = Counter(found.stored)
    found.lost = sorted(t for t in completed if times[t] == 0)
    p = found.problems
    p += [f"turn stored {n} times: {t!r}" for t, n in times.items() if n > 1]
    p += [f"stored turn never sent: {t!r}" for t in times if t not in started]
    if [w[0] for w in writes] != list(range(len(writes))):
        p.append(f"write ids are not 0..{len(writes) - 1}")
    text_of = dict(turns)
    writes_of, engrams_of = Counter(w[1] for w in writes), Counter(e[1] for e in engrams)
    engram_of = {e[1]: e[0] for e in engrams}
    for tid, text in turns:
        statement = not text.endswith("?")
        if engrams_of[tid] != 1:
            p.append(f"turn {tid} {text!r} has {engrams_of[tid]} engrams")
        if writes_of[tid] != int(statement):
            p.append(f"turn {tid} {text!r} has {writes_of[tid]} neural writes")
    for wid, tid, engram, text in writes:
        if text_of.get(tid) != text:
            p.append(f"write {wid} {text!r} belongs to turn {tid}, which is not stored or says something else")
        elif engram != engram_of.get(tid):
            p.append(f"write {wid} names engram {engram}, its turn's is {engram_of.get(tid)}")
    for eid, tid, text in engrams:
        if text_of.get(tid) != text:
            p.append(f"engram {eid} {text!r} belongs to turn {tid}, which is not stored or says something else")
    if writes and (snapshot is None or snapshot[0] != len(writes)):
        p.append(f"the neural snapshot holds {snapshot and snapshot[0]} writes, the log {len(writes)}")
    if engrams and (counters is None or counters[0] <= engrams[-1][0]):
        p.append(f"engram_counters.next_id {counters and counters[0]} is not past engram {engrams[-1][0]}")
    return found


def run(args: argparse.Namespace) -> dict:
    begun = time.perf_counter()
    rng = random.Random(args.seed)
    folder = Path(args.dir) if args.dir else Path(tempfile.mkdtemp(prefix="crash-"))
    folder.mkdir(parents=True, exist_ok=True)
    db, log = folder / "crash.db", folder / "children.log"
    for stale in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        stale.unlink(missing_ok=True)
    mode = "spawn" if args.spawn else "fork"
    print(f"crash bench: {args.trials} trials, one user across all, {mode}ed children; database {db}", flush=True)

    parts, load_s = None, 0.0
    if not args.spawn:
        loaded = time.perf_counter()
        parts = agent_parts(db)
        load_s = time.perf_counter() - loaded

    def start(trial: int, turns: int | None) -> Child:
        return start_spawn(db, trial, turns, log) if args.spawn else start_fork(parts, db, trial, turns, log)

    completed: set[str] = set()  # every message a child reported done
    started: set[str] = set()  # every message a child began
    tally = Counter()
    restart_s: list[float] = []  # start of a child to its Agent being ready
    reload_s: list[float] = []  # its first turn: the user loaded again and one turn stored
    turn_s: list[float] = []
    save_s: list[float] = []  # TXN to COMMITTED, as this process saw the lines
    problems: list[str] = []
    lost: set[str] = set()
    committed_unreported: set[str] = set()  # stored by a turn the kill interrupted after its commit
    live: Child | None = None
    try:
        for trial in range(args.trials + 1):
            final = trial == args.trials
            live = start(trial, 1 if final else None)
            first = live.wait_for(("DONE 0 ", "ERROR"), STARTUP_TIMEOUT_S)
            aimed = False
            if first is None or not live.lines[first][1].startswith("DONE"):
                why = live.lines[first][1] if first is not None else "no first turn in time"
                if trial == 0:
                    live.kill()
                    live.reap()
                    raise RuntimeError(f"the first child could not chat ({why}); see {log}")
                tally["failed_reloads"] += 1
                problems.append(f"trial {trial - 1}: reload failed: {why}")
                live.kill()
            else:
                restart_s.append(live.time_of("READY") - live.started)
                reload_s.append(live.lines[first][0] - live.time_of("READY"))
                if not final:
                    if rng.random() < 0.5:  # anytime over the next few turns
                        tally["aimed_anytime"] += 1
                        estimate = statistics.mean(turn_s[-20:]) if turn_s else 1.0
                        live.drain(time.perf_counter() + rng.uniform(0.0, 3.0 * estimate))
                    else:  # a few milliseconds into a save
                        tally["aimed_at_a_save"] += 1
                        hit = live.wait_for(("TXN",), TURN_TIMEOUT_S * 3, after=first + 1, count=rng.randint(1, 3))
                        if hit is not None:
                            time.sleep(rng.uniform(0.0, 0.012))
                    live.kill()
                    aimed = True
            live.reap()
            child, live = live, None

            # what the child was doing when it died
            says = [line.split(" ", 1)[0] for _, line in child.lines]
            last_start = max((k for k, s in enumerate(says) if s == "START"), default=-1)
            last_done = max((k for k, s in enumerate(says) if s == "DONE"), default=-1)
            last_txn = max((k for k, s in enumerate(says) if s == "TXN"), default=-1)
            last_commit = max((k for k, s in enumerate(says) if s == "COMMITTED"), default=-1)
            if aimed and child.status == -signal.SIGKILL:
                tally["kills"] += 1
                if last_start > last_done:
                    tally["killed_mid_turn"] += 1
                    if last_txn > last_commit:
                        tally["killed_in_save"] += 1
                    elif last_commit > last_start:
                        tally["killed_after_commit"] += 1
                else:
                    tally["killed_between_turns"] += 1
            begun_at = {line.split(" ", 2)[1]: t for t, line in child.lines if line.startswith("START ")}
            turn_s += [t - begun_at[line.split(" ", 2)[1]] for t, line in child.lines
                       if line.startswith("DONE ") and not line.startswith("DONE 0 ")]  # the reload turn apart
            txn = None
            for t, line in child.lines:  # how long a transaction takes, so the aim at a save can be judged
                if line == "TXN":
                    txn = t
                elif line == "COMMITTED" and txn is not None:
                    save_s.append(t - txn)
                    txn = None
            started.update(child.texts("START"))
            completed.update(child.texts("DONE"))
            tally["turns_completed"] += len(child.texts("DONE"))

            found = check(db, completed, started)
            interrupted = child.texts("START")[-1:] if last_start > last_done else []
            unreported = [t for t in found.stored if t not in completed and t not in committed_unreported]
            found.problems += [f"stored but neither reported nor interrupted: {t!r}" for t in unreported if t not in interrupted]
            committed_unreported.update(t for t in unreported if t in interrupted)
            new_lost = set(found.lost) - lost
            lost |= new_lost
            if found.problems:
                tally["corruptions"] += 1
                problems += [f"trial {trial}: {p}" for p in found.problems[:5]]
            if new_lost:
                problems += [f"trial {trial}: lost {t!r}" for t in sorted(new_lost)[:5]]
            if args.verbose or found.problems or new_lost:
                print(f"  trial {trial:3d}: {says[-3:]} status {child.status}, {len(found.stored)} turns stored, "
                      f"{len(found.problems)} problems, {len(new_lost)} lost", flush=True)
            elif trial % 10 == 9:
                print(f"  {trial + 1} trials, {time.perf_counter() - begun:.0f} s", flush=True)
    finally:
        if live is not None:
            live.kill()
            live.reap()

    seconds = time.perf_counter() - begun
    result = {
        "trials": args.trials,
        "killed_mid_turn": tally["killed_mid_turn"],
        "corruptions": tally["corruptions"],
        "lost_turns": len(lost),
        "failed_reloads": tally["failed_reloads"],
        "seconds": round(seconds, 1),
        "mode": mode,
        "seed": args.seed,
        "kills": tally["kills"],
        "killed_in_save": tally["killed_in_save"],
        "killed_after_commit": tally["killed_after_commit"],
        "killed_between_turns": tally["killed_between_turns"],
        "turns_completed": tally["turns_completed"],
        "committed_unreported": len(committed_unreported),
        "turns_stored": len(check(db, completed, started).stored),
        "restart_s": round(statistics.mean(restart_s), 3) if restart_s else None,
        "reload_turn_s": round(statistics.mean(reload_s), 3) if reload_s else None,
        "turn_s": round(statistics.mean(turn_s), 3) if turn_s else None,
        "save_ms": round(1000 * statistics.median(save_s), 1) if save_s else None,
        "model_load_s": round(load_s, 2) if not args.spawn else None,
    }
    report(result, problems, folder, log)
    if not args.keep and not problems:
        for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm"), log):
            path.unlink(missing_ok=True)
        for lock in Path(f"{db}.locks").glob("*.lock"):
            lock.unlink()
        with contextlib.suppress(OSError):
            Path(f"{db}.locks").rmdir()
            folder.rmdir()
    return result


def report(r: dict, problems: list[str], folder: Path, log: Path) -> None:
    header = ["trials", "killed mid-turn", "in a save", "after commit", "between turns", "corruptions",
              "lost completed turns", "failed reloads", "seconds"]
    values = [r["trials"], r["killed_mid_turn"], r["killed_in_save"], r["killed_after_commit"], r["killed_between_turns"],
              r["corruptions"], r["lost_turns"], r["failed_reloads"], r["seconds"]]
    widths = [max(len(h), len(str(v))) for h, v in zip(header, values)]
    print()
    print("  ".join(h.rjust(w) for h, w in zip(header, widths)))
    print("  ".join(str(v).rjust(w) for v, w in zip(values, widths)))
    print()
    print(f"turns completed {r['turns_completed']}, stored {r['turns_stored']} (of which {r['committed_unreported']} "
          f"committed by a turn the kill interrupted before it reported); a turn {r['turn_s']} s, "
          f"its transaction {r['save_ms']} ms (median)")
    restart = f"a child's restart {r['restart_s']} s to a ready Agent, then {r['reload_turn_s']} s for the reload turn"
    if r["mode"] == "fork":
        restart += f" (forked from a process that loaded the model in {r['model_load_s']} s; --spawn pays the imports and load every trial)"
    else:
        restart += " (a new interpreter: imports and model load every trial)"
    print(restart)
    if problems:
        print(f"problems (database and children's log kept in {folder}; see {log}):")
        for p in problems[:40]:
            print(f"  {p}")
    print("RESULT " + json.dumps({k: r[k] for k in ("trials", "killed_mid_turn", "corruptions", "lost_turns",
                                                     "failed_reloads", "seconds")} | r), flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="5 trials")
    parser.add_argument("--trials", type=int, default=None, help="kills (default 100, --quick 5)")
    parser.add_argument("--seed", type=int, default=0, help="seeds when and how each kill comes")
    parser.add_argument("--spawn", action="store_true", help="a new interpreter per trial instead of a fork")
    parser.add_argument("--dir", default=None, help="folder for the database and children's log (default: a new temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the database and log even when nothing went wrong")
    parser.add_argument("--verbose", action="store_true", help="a line per trial")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--db", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--trial", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--turns", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(Path(args.db), args.trial, args.turns, sys.stdout.fileno())
    if args.trials is None:
        args.trials = 5 if args.quick else 100
    result = run(args)
    bad = result["corruptions"] or result["lost_turns"] or result["failed_reloads"]
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
