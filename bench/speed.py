"""Start-up and generation speed of the controller on this machine.

    python bench/speed.py [--quick] [--config configs/default.yaml]

Cold start: a fresh process converts the package's GGUF file into an empty cache
folder and loads it. Warm start: a fresh process loads the cached safetensors.
Both include Python's imports, as a user waiting for `make run` sees them.
Prefill: prompt tokens per second of one forward pass. Decode: new tokens per
second after the first, greedy, batch 1, in the config's dtype.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from chatbot import Controller, load_config

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


def start_seconds(config: str, cache: str) -> float:
    """Seconds for a new Python process to import everything and load the model."""
    code = LOAD_SNIPPET.format(config=config, cache=cache)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


@torch.inference_mode()
def prefill_tok_s(controller: Controller, tokens: int, repeats: int) -> float:
    ids = torch.randint(100, 40000, (1, tokens), generator=torch.Generator().manual_seed(0))
    controller.model(input_ids=ids)  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        controller.model(input_ids=ids)
        times.append(time.perf_counter() - start)
    return tokens / statistics.median(times)


@torch.inference_mode()
def decode_tok_s(controller: Controller, new_tokens: int, repeats: int) -> float:
    """Tokens/s after the first: (t(N tokens) - t(1 token)) / (N - 1), so prefill cancels."""
    ids = controller.chat_ids([{"role": "user", "content": "Tell me a long story about a dragon."}])

    def run(n: int) -> float:
        start = time.perf_counter()
        controller.model.generate(
            input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n, min_new_tokens=n,
            do_sample=False, temperature=None, top_p=None, top_k=None,
            pad_token_id=controller.tokenizer.eos_token_id,
        )
        return time.perf_counter() - start

    run(4)  # warm-up
    first = statistics.median(run(1) for _ in range(repeats))
    full = statistics.median(run(new_tokens) for _ in range(repeats))
    return (new_tokens - 1) / (full - first)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="skip the cold conversion; fewer repeats (< 1 minute)")
    parser.add_argument("--config", default=str(ROOT / "configs" / "default.yaml"))
    args = parser.parse_args()
    repeats = 2 if args.quick else 5
    cfg = load_config(args.config).model
    cache = str((ROOT / cfg.cache_dir).resolve()) if not Path(cfg.cache_dir).is_absolute() else cfg.cache_dir

    warm = start_seconds(args.config, cache)  # also makes sure the cache exists
    cold = None
    if not args.quick:
        with tempfile.TemporaryDirectory() as empty:
            cold = start_seconds(args.config, empty)

    cfg.cache_dir = cache
    controller = Controller.from_config(cfg)
    prefill = prefill_tok_s(controller, 256 if args.quick else 512, repeats)
    decode = decode_tok_s(controller, 32 if args.quick else 64, repeats)

    print(f"machine: {torch.get_num_threads()} torch threads, torch {torch.__version__}, {cfg.dtype}, model cache {cache}")
    print(f"{'measure':<34}{'value':>12}")
    print(f"{'cold start (convert GGUF + load)':<34}{'skipped' if cold is None else f'{cold:.1f} s':>12}")
    print(f"{'warm start (cached safetensors)':<34}{f'{warm:.1f} s':>12}")
    print(f"{'prefill':<34}{f'{prefill:.0f} tok/s':>12}")
    print(f"{'decode':<34}{f'{decode:.1f} tok/s':>12}")
    result = {
        "cold_start_s": None if cold is None else round(cold, 2),
        "warm_start_s": round(warm, 2),
        "prefill_tok_s": round(prefill, 1),
        "decode_tok_s": round(decode, 1),
    }
    print("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
