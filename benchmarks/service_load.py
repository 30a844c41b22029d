"""`tunesmith service` under load, loopback only and bounded: N queued fine-tuning jobs (tiny
model, a few steps each) against W workers while rounds of C concurrent status polls run. Checks
that no job is lost or run twice (every job succeeds, each started exactly once, never more than W
at a time) and reports poll latency (p50/p95/p99) and throughput.

    OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/service_load.py            # 20 jobs, 200 polls
    .venv/bin/python benchmarks/service_load.py --tiny                                          # 2 jobs, 20 polls
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from serve_throughput import free_port, machine_kind, make_model, pct  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
FINAL = ("succeeded", "failed", "cancelled")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=20)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--polls", type=int, default=200, help="concurrent status polls per round")
    ap.add_argument("--steps", type=int, default=2, help="training steps per job")
    ap.add_argument("--timeout", type=float, default=1800)
    ap.add_argument("--tiny", action="store_true", help="2 jobs, 20 concurrent polls (seconds)")
    args = ap.parse_args()
    if args.tiny:
        args.jobs, args.polls, args.steps = 2, 20, 1
    import httpx
    import openai

    from tunesmith.service.store import Store

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
           "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        base = make_model(root / "base", "nano")
        store = Store(root / "store")
        _, key = store.create_key("load")
        store.close()
        rows = [{"messages": [{"role": "user", "content": f"What is {i} + 1?"},
                              {"role": "assistant", "content": str(i + 1)}]} for i in range(8)]
        (root / "chat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        port = free_port()
        log = open(root / "service.log", "wb")
        svc = subprocess.Popen([sys.executable, "-m", "tunesmith.cli", "--quiet", "service", "--store",
                                str(root / "store"), "--model", f"tiny={base}", "--port", str(port), "--workers",
                                str(args.workers)], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            for _ in range(300):
                try:
                    if httpx.get(url + "/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    time.sleep(0.2)
            client = openai.OpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
            f = client.files.create(file=(root / "chat.jsonl").open("rb"), purpose="fine-tune")
            recipe = {"train": {"max_steps": args.steps, "save_steps": args.steps, "batch_size": 2, "dtype": "fp32"}}
            t0 = time.perf_counter()
            ids = [client.fine_tuning.jobs.create(model="tiny", training_file=f.id, seed=i,
                                                  method={"type": "supervised", "supervised": {"recipe": recipe}}).id
                   for i in range(args.jobs)]
            latencies: list[float] = []
            errors = 0
            http = httpx.Client(base_url=url + "/v1", headers={"Authorization": f"Bearer {key}"}, timeout=60,
                                limits=httpx.Limits(max_connections=args.polls, max_keepalive_connections=args.polls,
                                                    keepalive_expiry=3))  # uvicorn closes idle ones after 5 s

            resets = 0

            def poll(i: int) -> tuple[float, str | None]:
                nonlocal resets
                s = time.perf_counter()
                try:
                    r = http.get(f"/fine_tuning/jobs/{ids[i % len(ids)]}")
                except httpx.TransportError:  # a keep-alive connection the server closed as it was reused
                    resets += 1
                    r = httpx.get(f"{url}/v1/fine_tuning/jobs/{ids[i % len(ids)]}", timeout=60,
                                  headers={"Authorization": f"Bearer {key}"})
                return time.perf_counter() - s, (r.json()["status"] if r.status_code == 200 else None)

            status: dict[str, str] = {}
            rounds = 0
            with ThreadPoolExecutor(args.polls) as pool:
                while time.perf_counter() - t0 < args.timeout:
                    results = list(pool.map(poll, range(args.polls)))
                    rounds += 1
                    latencies += [lat for lat, _ in results]
                    errors += sum(s is None for _, s in results)
                    status = {j: client.fine_tuning.jobs.retrieve(j).status for j in ids}
                    if all(s in FINAL for s in status.values()):
                        break
                    time.sleep(0.5)
            wall = time.perf_counter() - t0
            starts, spans = {}, []
            for j in ids:
                events = client.fine_tuning.jobs.list_events(j, limit=100).data
                starts[j] = sum(e.message == "Fine-tuning job started" for e in events)
                job = client.fine_tuning.jobs.retrieve(j)
                if job.finished_at:
                    start = min(e.created_at for e in events if e.message == "Fine-tuning job started")
                    spans.append((start, job.finished_at))
            overlap = max((sum(s <= t < e for s, e in spans) for t, _ in spans), default=0)
        finally:
            svc.terminate()
            svc.wait(30)
            log.close()
        ok = sum(s == "succeeded" for s in status.values())
        lost = len(ids) - len(status) + sum(s not in FINAL for s in status.values())
        dup = sum(n > 1 for n in starts.values())
        print(f"machine: {machine_kind()}; OMP_NUM_THREADS={env['OMP_NUM_THREADS']}")
        print("| jobs | workers | succeeded | lost | started twice | most running at once | polls | "
              "concurrent | poll errors | connection resets retried | p50 | p95 | p99 | wall |")
        print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        print(f"| {len(ids)} | {args.workers} | {ok} | {lost} | {dup} | {overlap} | {len(latencies)} | {args.polls} | "
              f"{errors} | {resets} | {1000 * pct(latencies, 0.5):.0f} ms | {1000 * pct(latencies, 0.95):.0f} ms | "
              f"{1000 * pct(latencies, 0.99):.0f} ms | {wall:.0f} s |")
        good = ok == len(ids) and lost == 0 and dup == 0 and errors == 0 and overlap <= args.workers
        if not good:
            print("FAILED: " + ", ".join(f"{j}: {s}" for j, s in status.items()), file=sys.stderr)
        return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
