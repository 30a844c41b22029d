"""`tunesmith serve` (dynamic batching, real HTTP + the openai client) vs a plain `model.generate`
loop serving the same requests one at a time: completion tokens/s and p50/p95 request latency at
1, 4 and 16 concurrent clients, in one run. The server runs as `tunesmith serve` in a subprocess;
the baseline runs in this process before it. Same model, prompts, greedy decoding, max_tokens and
stop tokens on both sides. Baseline latency is each request's own generate time (no queueing), so
it flatters the baseline at concurrency > 1.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/serve_throughput.py --requests 32 --max-tokens 32
    python benchmarks/serve_throughput.py --tiny     # seconds: 4 requests x 4 tokens at 1 and 4 clients
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

QUESTIONS = ["Tell me a story about a cat.", "What did the little dog find?", "Why was Lily sad?",
             "Write a short story about the sun.", "Who lived in the big house?", "What is a tree?",
             "Tell me about a brave boy.", "Where did the bird fly?"]


def machine_kind() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10, check=False).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no lscpu)"
    model = next((line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("Model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in out.splitlines() if line.startswith("Flags")), []))
    has = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2") if f in flags]
    return f"{model}; {os.cpu_count()} CPUs; flags: {', '.join(has) or 'none of avx2/avx512/amx'}"


def make_model(folder: Path, size: str) -> Path:
    """A random llama (`size` preset) with a 1024-token BPE tokenizer (ChatML)."""
    import torch

    from tunesmith.pretraining.corpus import __file__ as corpus_init
    from tunesmith.pretraining.presets import build_model
    from tunesmith.pretraining.tokenizer import train_tokenizer

    text = (Path(corpus_init).parent / "tinytales.txt").read_text(encoding="utf-8")
    tok = train_tokenizer(text.split("\n\n")[:1000], vocab_size=1024)
    torch.manual_seed(0)
    model = build_model("llama", size, vocab=len(tok), context=512, bos_token_id=tok.bos_token_id,
                        eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q * (len(values) - 1))))]


def baseline(folder: Path, prompts: list[list[dict]], max_tokens: int) -> dict:
    """One request at a time: chat template, generate (greedy, end-of-turn ids), decode."""
    import torch

    from tunesmith.core.modelio import load_model, load_tokenizer
    from tunesmith.data.chat import render_messages
    from tunesmith.serve.engine import end_ids_of

    model, tok = load_model(folder, dtype=torch.float32).eval(), load_tokenizer(folder)  # fp32 on both sides
    end = end_ids_of(model, tok)
    lat, tokens = [], 0
    start = time.perf_counter()
    for messages in prompts:
        t = time.perf_counter()
        enc = tok(render_messages(messages, tok, add_generation_prompt=True), return_tensors="pt",
                  add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**enc, max_new_tokens=max_tokens, do_sample=False, eos_token_id=end,
                                 pad_token_id=tok.pad_token_id)
        new = out[0, enc["input_ids"].shape[1]:].tolist()
        tokens += next((i for i, x in enumerate(new) if x in end), len(new))
        tok.decode(new, skip_special_tokens=True)
        lat.append(time.perf_counter() - t)
    wall = time.perf_counter() - start
    return {"tokens": tokens, "wall": wall, "tok_s": tokens / wall, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95)}


def served(url: str, model: str, prompts: list[list[dict]], max_tokens: int, clients: int) -> dict:
    import openai

    client = openai.OpenAI(base_url=url, api_key="bench", max_retries=0, timeout=600)

    def one(messages):
        t = time.perf_counter()
        r = client.chat.completions.create(model=model, messages=messages, temperature=0, max_tokens=max_tokens)
        return time.perf_counter() - t, r.usage.completion_tokens

    start = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        results = list(pool.map(one, prompts))
    wall = time.perf_counter() - start
    lat = [r[0] for r in results]
    tokens = sum(r[1] for r in results)
    return {"tokens": tokens, "wall": wall, "tok_s": tokens / wall, "p50": pct(lat, 0.5), "p95": pct(lat, 0.95)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="nano", help="model preset (tunesmith.pretraining.presets)")
    ap.add_argument("--requests", type=int, default=32, help="requests per concurrency level")
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--clients", default="1,4,16", help="comma-separated concurrency levels")
    ap.add_argument("--model", help="an existing model folder instead of a random one")
    ap.add_argument("--tiny", action="store_true", help="seconds: nano model, 4 requests x 4 tokens, 1 and 4 clients")
    args = ap.parse_args()
    if args.tiny:
        args.size, args.requests, args.max_tokens, args.clients = "nano", 4, 4, "1,4"
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    print(f"machine: {machine_kind()}; torch threads {torch.get_num_threads()}; fp32 on both sides")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(args.model) if args.model else make_model(Path(tmp) / "model", args.size)
        prompts = [[{"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]}] for i in range(args.requests)]
        base = baseline(folder, prompts, args.max_tokens)
        print(f"plain generate loop: {base['tokens']} tokens in {base['wall']:.2f}s = {base['tok_s']:.1f} tok/s, "
              f"latency p50 {base['p50'] * 1000:.0f} ms p95 {base['p95'] * 1000:.0f} ms")
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "serve", str(folder), "--port", str(port),
                                 "--quiet", "--name", "bench", "--max-batch", "16", "--dtype", "float32"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            import httpx

            deadline = time.monotonic() + 120
            while True:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"the server did not start: {proc.stderr.read() if proc.stderr else ''}")
                time.sleep(0.2)
            url = f"http://127.0.0.1:{port}/v1"
            served(url, "bench", prompts[:2], 4, 1)  # warm up
            print(f"{'clients':>7} {'tok/s':>8} {'x loop':>7} {'p50 ms':>8} {'p95 ms':>8} {'tokens':>7}")
            for c in (int(x) for x in args.clients.split(",")):
                r = served(url, "bench", prompts, args.max_tokens, c)
                print(f"{c:>7} {r['tok_s']:>8.1f} {r['tok_s'] / base['tok_s']:>6.2f}x {r['p50'] * 1000:>8.0f} "
                      f"{r['p95'] * 1000:>8.0f} {r['tokens']:>7}")
            metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
            rows = {line.split()[0]: float(line.split()[1]) for line in metrics.splitlines()
                    if line.startswith("tunesmith_batch_rows")}
            if rows.get("tunesmith_batch_rows_count"):
                print(f"mean rows per generate call: "
                      f"{rows['tunesmith_batch_rows_sum'] / rows['tunesmith_batch_rows_count']:.2f}")
        finally:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    main()
