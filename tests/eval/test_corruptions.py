"""The CoLA benchmark's synthetic negatives (benchmarks/corruptions.py): one corruption per
copy, never an original sentence, labels right, seeded."""
import importlib.util
import random
from pathlib import Path

_spec = importlib.util.spec_from_file_location(
    "corruptions", Path(__file__).resolve().parents[2] / "benchmarks" / "corruptions.py")
corruptions = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(corruptions)

SENTENCES = ["The dog chases the cat.", "She has given him a book.", "They were reading in the garden.",
             "Bill sold Tom a car.", "Go away!", "John left."]


def test_rows_pair_originals_with_corrupted_copies():
    rows = corruptions.corruption_rows(SENTENCES, copies=3, seed=0)
    good = [r["sentence"] for r in rows if r["label"] == 1]
    bad = [r["sentence"] for r in rows if r["label"] == 0]
    assert sorted(good) == sorted(SENTENCES)
    assert bad and len(bad) <= 3 * 4 and not set(bad) & set(SENTENCES) and len(set(bad)) == len(bad)
    assert [r["idx"] for r in rows] == list(range(len(rows)))
    assert rows == corruptions.corruption_rows(SENTENCES, copies=3, seed=0)
    assert rows != corruptions.corruption_rows(SENTENCES, copies=3, seed=1)


def test_one_edit_per_corruption_and_short_sentences_skipped():
    rng = random.Random(0)
    outs = [corruptions.corrupt("She has given him a book.", rng) for _ in range(200)]
    done = [o for o in outs if o is not None]  # None: the edit happened to give the sentence back
    assert len(done) > 150 and len(set(done)) > 20
    for out in done:
        assert out != "She has given him a book." and out.endswith(".")
        assert abs(len(out.split()) - 6) <= 1  # a swap, an inflection or a move keeps 6 words; drop/double +-1
    assert corruptions.corrupt("Go away!", rng) is None  # fewer than three plain words
    assert corruptions.corrupt("He is.", random.Random(0)) is None
