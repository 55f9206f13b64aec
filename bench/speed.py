"""Start-up, generation and turn speed on this machine: transformers' generate beside the lean decode path.

    python bench/speed.py [--quick] [--config configs/default.yaml]

Cold start: a fresh process converts the package's GGUF file into an empty cache
folder and loads it. Warm start: a fresh process loads the cached safetensors. Both
include Python's imports, as a user waiting for `make run` sees them.
Per decode path (transformers' generate; the lean path in float32, float16 and int8), through
`Controller.generate` with streaming, greedy, batch 1: decode tokens/s after the first
(t(N tokens) - t(1 token)) / (N - 1), so prefill cancels; prefill tokens/s of a fresh
512-token prompt. Time to first token: a 700-token conversation prompt with a note,
for a user without a cache (cold) and for the same user's next turn (reused).
Turns: whole chat turns of the default config (memory, vocabulary, SQLite) in one
conversation that teaches and asks, replies capped at 24 and at 128 tokens; the memory
stages' share of a turn. llama.cpp on the same GGUF file when `llama_cpp` imports.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch: only the model's thread runs a thread team (chatbot/__init__.py)

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from chatbot import Agent, Controller, load_config
from chatbot.config import GenerationConfig
from chatbot.controller import Generation
from chatbot.loading import find_package_gguf
from chatbot.prompt import chat_messages
from chatbot.turn import MEMORY_STAGES
from storage import Store

ROOT = Path(__file__).resolve().parent.parent

LOAD_SNIPPET = """
import time
start = time.perf_counter()
from chatbot import Controller, load_config
cfg = load_config({config!r}).model
cfg.cache_dir = {cache!r}
Controller.from_config(cfg)
print(time.perf_counter() - start)
"""

STORY = "Tell me a long story about a dragon who learns to bake bread."
# A conversation that teaches and asks: the turns of the 24- and 128-token runs.
TURNS = [
    "Hi! I'm planning my week and could use a hand remembering things.",
    "My sister Oriel lives in Vantastad and keeps two parrots.",
    "Remember: the boiler code is 7731.",
    "How do rainbows form?",
    "I parked on level 6, bay 14.",
    "Where does Oriel live?",
    "The dentist appointment moved to Thursday at 3pm.",
    "What is the boiler code?",
    "Can you suggest a quick dinner with rice and beans?",
    "Correction: the boiler code is now 4471.",
    "When is the dentist appointment?",
    "Which level did I park on?",
    "Why is the sky blue?",
    "What is the boiler code?",
    "How many parrots does Oriel keep?",
    "Thanks, that's all for now.",
]


def start_seconds(config: str, cache: str) -> float:
    """Seconds for a new Python process to import everything and load the model."""
    code = LOAD_SNIPPET.format(config=config, cache=cache)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def timed_reply(controller: Controller, ids: torch.Tensor, gen: GenerationConfig, user: str) -> tuple[float, Generation]:
    report = Generation()
    start = time.perf_counter()
    for _ in controller.generate(ids, gen=gen, report=report, user=user):
        pass
    return time.perf_counter() - start, report


def decode_tok_s(controller: Controller, gen: GenerationConfig, new_tokens: int, repeats: int) -> float:
    """Tokens/s after the first: (t(N) - t(1)) / (N - 1), each the median of `repeats`, no cache reused."""
    ids = controller.chat_ids([{"role": "user", "content": STORY}])
    one, full = dataclasses.replace(gen, max_new_tokens=1), dataclasses.replace(gen, max_new_tokens=new_tokens)
    timed_reply(controller, ids, dataclasses.replace(gen, max_new_tokens=4), "warm-up")
    first = statistics.median(timed_reply(controller, ids, one, f"d1-{i}")[0] for i in range(repeats))
    runs = [timed_reply(controller, ids, full, f"dn-{i}") for i in range(repeats)]
    made = runs[0][1].new_tokens
    return (made - 1) / (statistics.median(t for t, _ in runs) - first)


def prefill_tok_s(controller: Controller, gen: GenerationConfig, tokens: int, repeats: int) -> float:
    """Prompt tokens/s of a fresh prompt of `tokens` random ids (one new token generated)."""
    ids = torch.randint(100, 40000, (1, tokens), generator=torch.Generator().manual_seed(0))
    one = dataclasses.replace(gen, max_new_tokens=1)
    timed_reply(controller, ids, one, "p-warm-up")
    return tokens / statistics.median(timed_reply(controller, ids, one, f"p-{i}")[0] for i in range(repeats))


def long_conversation(controller: Controller, system: str, tokens: int) -> list[tuple[str, str]]:
    """Earlier turns, taken round-robin from TURNS with long replies, until a prompt holds about `tokens`."""
    history: list[tuple[str, str]] = []
    filler = ("Here is what I know about that. " * 12).strip()
    while controller.chat_ids(chat_messages(system, [], history, "ok")).shape[1] < tokens:
        history.append((TURNS[len(history) % len(TURNS)], filler))
    return history


def time_to_first_token(controller: Controller, gen: GenerationConfig, system: str, repeats: int) -> tuple[float, float, int]:
    """(cold, reused) seconds to the first token of a ~700-token prompt with a note, and its length."""
    history = long_conversation(controller, system, 700)
    note = ["My sister Oriel lives in Vantastad and keeps two parrots."]
    cold, reused, length = [], [], 0
    for i in range(repeats):
        user = f"ttft-{i}"
        ids = controller.chat_ids(chat_messages(system, note, history, "Where does Oriel live?"))
        length = ids.shape[1]
        _, report = timed_reply(controller, ids, gen, user)
        cold.append(report.first_token_seconds)
        answered = history + [("Where does Oriel live?", "Oriel lives in Vantastad.")]
        _, report = timed_reply(controller, controller.chat_ids(chat_messages(system, note, answered, "And her parrots?")), gen, user)
        reused.append(report.first_token_seconds)
    return statistics.median(cold), statistics.median(reused), length


def turns(controller: Controller, config: str, max_new_tokens: int, count: int) -> dict:
    """Whole chat turns of the default config in one conversation: wall seconds, first-piece seconds, memory share."""
    cfg = load_config(config)
    cfg.generation.max_new_tokens = max_new_tokens
    with tempfile.TemporaryDirectory() as folder:
        cfg.store.path = str(Path(folder) / "speed.db")
        agent = Agent(cfg, controller, Store(cfg.store.path))
        walls, firsts, memory_share = [], [], []
        try:
            for text in (TURNS * 4)[:count]:
                start, first, reply = time.perf_counter(), None, None
                for reply in agent.chat_stream("speed", text):
                    if first is None and reply.text:
                        first = time.perf_counter() - start
                walls.append(time.perf_counter() - start)
                firsts.append(first or walls[-1])
                memory_share.append(sum(reply.seconds.get(s, 0.0) for s in MEMORY_STAGES) / walls[-1])
        finally:
            agent.close()
    ordered = sorted(walls)
    return {
        "p50": statistics.median(walls), "p95": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
        "first_p50": statistics.median(firsts), "memory_share": statistics.median(memory_share), "turns": len(walls),
    }


def llama_cpp_decode_tok_s(model_cfg, new_tokens: int) -> float | None:
    """llama.cpp's decode tokens/s on the same GGUF file, 2 threads; None when llama_cpp does not import."""
    try:
        from llama_cpp import Llama
    except ImportError:
        return None
    llm = Llama(model_path=str(find_package_gguf(model_cfg.package)), n_threads=torch.get_num_threads(), n_ctx=1024, verbose=False)
    prompt = llm.tokenize(STORY.encode())

    def run(n: int) -> float:
        llm.reset()
        start = time.perf_counter()
        for i, _ in enumerate(llm.generate(prompt, temp=0.0)):
            if i + 1 == n:
                break
        return time.perf_counter() - start

    run(4)
    return (new_tokens - 1) / (statistics.median(run(new_tokens) for _ in range(3)) - statistics.median(run(1) for _ in range(3)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="no cold conversion, fewer repeats and turns (< 1 minute)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    cfg = load_config(args.config)
    cache = str((ROOT / cfg.model.cache_dir).resolve()) if not Path(cfg.model.cache_dir).is_absolute() else cfg.model.cache_dir

    warm = start_seconds(args.config, cache)  # also makes sure the cache exists
    cold = None
    if not args.quick:
        with tempfile.TemporaryDirectory() as empty:
            cold = start_seconds(args.config, empty)

    cfg.model.cache_dir = cache
    controller = Controller.from_config(cfg.model)
    default = cfg.generation
    fresh = dataclasses.replace(default, prefix_cache_mb=0)  # every prompt prefilled whole
    paths = {
        "transformers generate": dataclasses.replace(fresh, decode="transformers"),
        "lean float32": dataclasses.replace(fresh, decode="lean", decode_weights="float32"),
        "lean float16": dataclasses.replace(fresh, decode="lean", decode_weights="float16"),
        "lean int8": dataclasses.replace(fresh, decode="lean", decode_weights="int8"),
    }
    n_decode, n_prefill = (32, 256) if args.quick else (64, 512)
    speeds = {name: (decode_tok_s(controller, gen, n_decode, repeats), prefill_tok_s(controller, gen, n_prefill, repeats))
              for name, gen in paths.items()}
    product = f"lean {default.decode_weights}" if default.decode == "lean" else "transformers generate"
    ttft_cold, ttft_reused, ttft_tokens = time_to_first_token(controller, default, cfg.chat.system_prompt, repeats)
    short = turns(controller, args.config, 24, 8 if args.quick else 32)
    long = turns(controller, args.config, 128, 4 if args.quick else 16)
    llama = None if args.quick else llama_cpp_decode_tok_s(cfg.model, n_decode)

    print(f"machine: {controller.call(torch.get_num_threads)} CPU threads on the model thread, torch {torch.__version__}, model cache {cache}")
    print(f"product default: {product}, prefix cache {default.prefix_cache_mb} MB")
    print(f"\n{'decode path':<24}{'decode tok/s':>14}{'prefill tok/s':>15}")
    for name, (dec, pre) in speeds.items():
        print(f"{name + (' *' if name == product else ''):<24}{dec:>14.1f}{pre:>15.0f}")
    print(f"{'llama.cpp (same GGUF)':<24}{'not installed' if llama is None else f'{llama:.1f}':>14}{'':>15}")
    print(f"\n{'measure':<46}{'value':>12}")
    rows = [
        ("cold start (convert GGUF + load)", "skipped" if cold is None else f"{cold:.1f} s"),
        ("warm start (cached safetensors)", f"{warm:.1f} s"),
        (f"first token, {ttft_tokens}-token prompt, cold", f"{ttft_cold:.3f} s"),
        (f"first token, {ttft_tokens}-token prompt, reused", f"{ttft_reused:.3f} s"),
        (f"turn p50 / p95, 24-token replies ({short['turns']})", f"{short['p50']:.2f} / {short['p95']:.2f} s"),
        ("  first piece of the reply, p50", f"{short['first_p50']:.2f} s"),
        ("  memory stages' share of a turn, p50", f"{100 * short['memory_share']:.1f}%"),
        (f"turn p50 / p95, 128-token replies ({long['turns']})", f"{long['p50']:.2f} / {long['p95']:.2f} s"),
    ]
    for name, value in rows:
        print(f"{name:<46}{value:>12}")
    decode = speeds[product][0]
    result = {
        "decode_tok_s": round(decode, 1),
        "generate_decode_tok_s": round(speeds["transformers generate"][0], 1),
        "lean_float32_decode_tok_s": round(speeds["lean float32"][0], 1),
        "lean_float16_decode_tok_s": round(speeds["lean float16"][0], 1),
        "lean_int8_decode_tok_s": round(speeds["lean int8"][0], 1),
        "prefill_tok_s": round(speeds[product][1], 1),
        "ttft_s_cold": round(ttft_cold, 3),
        "ttft_s_reused": round(ttft_reused, 3),
        "turn_p50_s_24": round(short["p50"], 3),
        "turn_p95_s_24": round(short["p95"], 3),
        "turn_p50_s_128": round(long["p50"], 3),
        "memory_share_24": round(short["memory_share"], 4),
        "warm_start_s": round(warm, 2),
        "cold_start_s": None if cold is None else round(cold, 2),
        "llama_cpp_decode_tok_s": None if llama is None else round(llama, 1),
        "ratio_to_llama_cpp": None if llama is None else round(decode / llama, 3),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
