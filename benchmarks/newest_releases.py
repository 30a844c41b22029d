"""The suite against the newest releases pyproject.toml's ranges allow (not run by CI).

Resolves every dependency afresh with uv (torch pinned to the CPU wheel, as in `make lock`),
installs it into a new virtual environment, runs the full suite there and prints a markdown
table for benchmarks/RESULTS.md: each key package's locked and tried version, then the suite's
summary and failing tests. `--beyond-bounds` drops the upper bounds first, to see what the next
releases would break before the bounds are raised.

    python benchmarks/newest_releases.py [--beyond-bounds] [--venv /tmp/ts-newest] [-- -k sft]
    python benchmarks/newest_releases.py --tiny    # offline: the plan only (what would be resolved and run)
"""
from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import time
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KEY = ["torch", "transformers", "peft", "trl", "bitsandbytes", "accelerate", "datasets",
       "tokenizers", "huggingface-hub", "evaluate"]


def pins(text: str) -> dict[str, str]:
    """name -> version of every `name==version` line of a requirements file."""
    found = re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)", text, flags=re.M)
    return {name.lower().replace("_", "-"): version for name, version in found}


def requirements(beyond_bounds: bool) -> list[str]:
    """pyproject's dependencies and dev extras, upper bounds dropped when asked."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    reqs = project["dependencies"] + project["optional-dependencies"]["dev"]
    if beyond_bounds:
        reqs = [re.sub(r",?\s*(<=|<)[^,;]*", "", r) for r in reqs]
    return reqs


def resolve(reqs: list[str], work: Path) -> str:
    (work / "requirements.in").write_text("\n".join(reqs) + "\n")
    cmd = [sys.executable, "-m", "uv", "pip", "compile", str(work / "requirements.in"),
           "--python-version", "3.11", "--python-platform", "x86_64-manylinux_2_28",
           "--find-links", "/opt/wheels", "--constraint", str(ROOT / "scripts/lock-constraints.txt"),
           "--upgrade", "--no-header", "--output-file", str(work / "resolved.txt")]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (work / "resolved.txt").read_text()


def install(venv: Path, resolved: Path) -> Path:
    shutil.rmtree(venv, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin/python"
    subprocess.run([py, "-m", "pip", "install", "-q", "-r", str(resolved)], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", "--no-deps", "-e", str(ROOT)], check=True)
    return py


def run_suite(py: Path, pytest_args: list[str], log: Path) -> tuple[str, list[str], float]:
    start = time.time()
    with log.open("w") as out:
        subprocess.run([py, "-m", "pytest", "-q", "-p", "no:cacheprovider", *pytest_args],
                       cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                       env=dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false",
                                PATH=f"{py.parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"))
    return (*summarize(log.read_text()), time.time() - start)


def summarize(text: str) -> tuple[str, list[str]]:
    """(pytest's closing count line, the failing tests' ids) from a pytest log."""
    summary = re.findall(r"^=*\s*(\d+ (?:passed|failed|error).*?) in [\d.]+s", text, flags=re.M)
    failed = re.findall(r"^(?:FAILED|ERROR) (\S+)", text, flags=re.M)
    return (summary[-1] if summary else "no summary (see log)"), failed


def table(locked: dict, tried: dict, summary: str, failed: list[str], minutes: float,
          beyond: bool) -> str:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor())
    flags = Path("/proc/cpuinfo").read_text()
    kind = ("AMX" if " amx_bf16" in flags else "AVX512-BF16" if " avx512_bf16" in flags
            else "AVX-512" if " avx512f" in flags else "AVX2")
    lines = [f"{time.strftime('%Y-%m-%d')}, {cpu} ({kind}), "
             f"{'upper bounds dropped' if beyond else 'ranges as in pyproject.toml'}:", "",
             "| package | locked | tried |", "|---|---|---|"]
    for name in KEY:
        mark = "" if locked.get(name) == tried.get(name) else " (newer)"
        lines.append(f"| {name} | {locked.get(name, '-')} | {tried.get(name, '-')}{mark} |")
    changed = sorted(n for n in tried if n not in KEY and tried[n] != locked.get(n))
    lines += ["", f"Other packages that differ from the lock: {', '.join(changed) or 'none'}.",
              f"Suite: **{summary}** ({minutes:.0f} min)."]
    lines += [f"- failed: `{name}`" for name in failed]
    return "\n".join(lines)


def plan(beyond: bool, venv: Path) -> str:
    """What a run would do, offline: the requirements it resolves (bounds dropped or not), the
    locked version of each key package, and the commands."""
    locked = pins((ROOT / "requirements.lock").read_text())
    reqs = requirements(beyond)
    named = {re.split(r"[<>=!~\[; ]", r, maxsplit=1)[0].lower().replace("_", "-"): r for r in reqs}
    lines = [f"plan ({'upper bounds dropped' if beyond else 'ranges as in pyproject.toml'}; nothing resolved "
             "or installed):", "", "| package | locked | requirement |", "|---|---|---|"]
    lines += [f"| {name} | {locked.get(name, '-')} | {named.get(name, '(dependency of another)')} |" for name in KEY]
    lines += ["", f"requirements: {len(reqs)} ({sum(1 for r in reqs if '<' in r)} with an upper bound)",
              f"1. uv pip compile --upgrade against scripts/lock-constraints.txt -> {venv.name}-work/resolved.txt",
              f"2. python -m venv {venv}; pip install -r resolved.txt; pip install --no-deps -e {ROOT}",
              "3. pytest -q (the full suite), then this table with the tried versions"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--tiny", action="store_true", help="offline: print the plan, resolve and install nothing")
    ap.add_argument("--beyond-bounds", action="store_true", help="drop pyproject's upper bounds")
    ap.add_argument("--venv", type=Path, default=Path("/tmp/tunesmith-newest"))
    ap.add_argument("pytest_args", nargs="*", help="after --: passed to pytest")
    args = ap.parse_args()
    if args.tiny:
        print(plan(args.beyond_bounds, args.venv))
        return
    work = args.venv.with_name(args.venv.name + "-work")
    work.mkdir(parents=True, exist_ok=True)
    tried = pins(resolve(requirements(args.beyond_bounds), work))
    locked = pins((ROOT / "requirements.lock").read_text())
    py = install(args.venv, work / "resolved.txt")
    summary, failed, seconds = run_suite(py, args.pytest_args, work / "pytest.log")
    report = table(locked, tried, summary, failed, seconds / 60, args.beyond_bounds)
    (work / "table.md").write_text(report + "\n")
    print(report)
    print(f"\nlog: {work / 'pytest.log'}")


if __name__ == "__main__":
    main()
