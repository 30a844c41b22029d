"""Synthetic unacceptable sentences for a CoLA intermediate task: acceptable sentences with one
word-level corruption each (agreement and case swaps, a dropped, doubled or moved word, a
changed inflection), labelled 0 next to the originals labelled 1. The idea is ELECTRA's
(detect replaced tokens) at sentence level, built from CoLA's own train sentences: no CoLA dev
row and no human label of the corrupted sentences is involved.

>>> corrupt("The dog chases the cat.", random.Random(0))
'The dog chases the.'

    python benchmarks/corruptions.py [--data ../shared/data/glue] [--copies 1]   # counts per operation
    python benchmarks/corruptions.py --tiny     # a few built-in sentences, seconds
"""
from __future__ import annotations

import argparse
import collections
import random
import re
from pathlib import Path

# pairs swapped in either direction: agreement, case, determiners, auxiliaries
SWAPS = [("is", "are"), ("was", "were"), ("has", "have"), ("does", "do"), ("he", "him"), ("she", "her"),
         ("they", "them"), ("we", "us"), ("i", "me"), ("who", "whom"), ("a", "an"), ("this", "these"),
         ("that", "those"), ("much", "many"), ("himself", "herself"), ("themselves", "himself"),
         ("to", "for"), ("of", "by"), ("in", "on"), ("did", "done"), ("saw", "seen"), ("went", "gone")]
SWAP = {a: b for a, b in SWAPS} | {b: a for a, b in SWAPS}  # "himself" is in two pairs: -> "themselves" wins
WORD = re.compile(r"^[A-Za-z]+$")


def _case_like(word: str, model: str) -> str:
    return word.capitalize() if model[:1].isupper() else word


def _inflect(word: str) -> str:
    """A changed inflection: -s dropped or added, -ed <-> -ing."""
    if word.endswith("ing") and len(word) > 5:
        return word[:-3] + "ed"
    if word.endswith("ed") and len(word) > 4:
        return word[:-2] + "ing"
    if word.endswith("s") and len(word) > 3:
        return word[:-1]
    return word + "s"


def corrupt(sentence: str, rng: random.Random) -> str | None:
    """`sentence` with one corruption, or None when none applies (fewer than three plain words, or
    the edit gave the sentence back)."""
    words = sentence.split()
    tail = ""
    if words and words[-1][-1:] in ".?!":
        tail, words[-1] = words[-1][-1], words[-1][:-1]
    plain = [i for i, w in enumerate(words) if WORD.match(w)]
    if len(plain) < 3:
        return None
    swappable = [i for i in plain if words[i].lower() in SWAP]
    op = rng.choice(["swap", "swap", "inflect", "drop", "double", "move"])
    if op == "swap" and swappable:
        i = rng.choice(swappable)
        words[i] = _case_like(SWAP[words[i].lower()], words[i])
    elif op in ("swap", "inflect"):
        i = rng.choice(plain[1:])
        words[i] = _inflect(words[i])
    elif op == "drop":
        del words[rng.choice(plain[1:])]
    elif op == "double":
        i = rng.choice(plain)
        words.insert(i, words[i].lower())
    else:  # move a word two to four places away
        i = rng.choice(plain[1:])
        w = words.pop(i)
        j = min(len(words), max(1, i + rng.choice([-4, -3, -2, 2, 3, 4])))
        words.insert(j, w)
    out = " ".join(words) + tail
    return out if out != sentence else None


def corruption_rows(sentences: list[str], copies: int, seed: int) -> list[dict]:
    """CoLA-format rows: every sentence labelled 1, and `copies` corrupted versions of each
    labelled 0 (duplicates and unchanged outputs skipped), shuffled with `seed`."""
    rng = random.Random(seed)
    rows, seen = [], set(sentences)
    for s in sentences:
        rows.append({"sentence": s, "label": 1})
        for _ in range(copies):
            bad = corrupt(s, rng)
            if bad is not None and bad not in seen:
                seen.add(bad)
                rows.append({"sentence": bad, "label": 0})
    rng.shuffle(rows)
    return [{**r, "idx": i} for i, r in enumerate(rows)]


SAMPLE = ["The dog chases the cat.", "She has eaten the apples that we bought.", "They were walking to school.",
          "I saw him at the station yesterday.", "This book is much better than that one.",
          "The children played in the garden all day.", "He gave a present to his mother.", "We did it."]


def main() -> None:
    ap = argparse.ArgumentParser(description="synthetic corruptions of CoLA's acceptable train sentences")
    ap.add_argument("--tiny", action="store_true", help="a few built-in sentences instead of CoLA's train split")
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/glue"))
    ap.add_argument("--copies", type=int, default=1)
    ap.add_argument("--seed", type=int, default=42)
    args = ap.parse_args()
    if args.tiny:
        sentences = SAMPLE
    else:
        from tunesmith.eval import get_task, load_split

        rows = load_split(get_task("glue", "cola"), "train", data_dir=args.data)
        sentences = [r["sentence"] for r in rows if r["label"] == 1]
    rows = corruption_rows(sentences, args.copies, args.seed)
    labels = collections.Counter(r["label"] for r in rows)
    print("| sentences | copies | acceptable rows | corrupted rows | corrupted share |")
    print("|---:|---:|---:|---:|---:|")
    print(f"| {len(sentences)} | {args.copies} | {labels[1]} | {labels[0]} | {labels[0] / max(1, len(rows)):.2f} |")
    for r in [r for r in rows if r["label"] == 0][:3]:
        print(f"example: {r['sentence']}")


if __name__ == "__main__":
    main()
