"""PII anonymization: precision/recall per type on the generated set and the hand-written held-out set,
and throughput. Usage: python benchmarks/data_pii.py [--tiny]   (--tiny: the first 40 rows of each set)"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

from tunesmith.data.pii import Anonymizer, evaluate, load_labelled

HERE = Path(__file__).resolve().parents[1] / "tests" / "data"


def table(name: str, scores: dict) -> None:
    print(f"\n{name}\n| type | gold | predicted | precision | recall | F1 |\n|---|---:|---:|---:|---:|---:|")
    for kind, s in scores.items():
        print(f"| {kind} | {s['gold']} | {s['predicted']} | {s['precision']:.3f} | {s['recall']:.3f} | {s['f1']:.3f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tiny", action="store_true", help="seconds: the first 40 rows of each set")
    args = ap.parse_args()
    limit = 40 if args.tiny else None
    generated = load_labelled(str(HERE / "pii_labelled.jsonl"))[:limit]
    heldout = load_labelled(str(HERE / "pii_heldout.jsonl"))[:limit]
    table("generated set (pii_labelled.jsonl), default phone_regions [US]", evaluate(generated, Anonymizer()))
    table("held-out set (pii_heldout.jsonl), phone_regions [US]", evaluate(heldout, Anonymizer()))
    table("held-out set, phone_regions [US, GB]", evaluate(heldout, Anonymizer(phone_regions=["US", "GB"])))
    texts = [r["text"] for r in generated] * (2 if args.tiny else 20)
    an = Anonymizer()
    t = time.perf_counter()
    for text in texts:
        an.anonymize(text)
    dt = time.perf_counter() - t
    chars = sum(map(len, texts))
    print(f"\nthroughput: {len(texts) / dt:.0f} texts/s, {chars / dt / 1e6:.2f} M chars/s (1 core)")


if __name__ == "__main__":
    main()
