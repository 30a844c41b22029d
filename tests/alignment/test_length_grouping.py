"""Length-grouped batches for the preference stages: KTO's rows are put in an order whose batches
hold similar lengths (its trainer must read rows in order: the KL pairs are batch neighbours)."""
from __future__ import annotations

import random
import statistics

from tunesmith.alignment.batching import grouped_order, text_length


def _spread(order, lengths, batch):
    """Mean padding share of `batch`-row runs in `order` (padded to the longest)."""
    runs = [order[i:i + batch] for i in range(0, len(order) - batch + 1, batch)]
    return statistics.mean(1 - sum(lengths[i] for i in r) / (batch * max(lengths[i] for i in r)) for r in runs)


def test_grouped_order_is_a_permutation_with_little_padding_and_random_batch_order():
    rng = random.Random(0)
    lengths = [rng.choice([rng.randint(5, 40), rng.randint(200, 600)]) for _ in range(1003)]
    order = grouped_order(lengths, batch=8, seed=3)
    assert sorted(order) == list(range(1003)) and order == grouped_order(lengths, batch=8, seed=3)
    assert order != grouped_order(lengths, batch=8, seed=4)
    shuffled = list(range(1003))
    rng.shuffle(shuffled)
    assert _spread(order, lengths, 8) < 0.1 < 0.3 < _spread(shuffled, lengths, 8)
    firsts = [lengths[order[i]] for i in range(0, 1000, 8)]
    assert firsts != sorted(firsts, reverse=True)       # batches are not served longest first throughout
    # the one partial batch is last: the 3 shortest rows of the last group of 50 batches (from 200+ rows, half
    # of them 5-40 long, so all at most 10; 3 rows drawn at random would be with probability ~1e-4)
    assert len(order) % 8 == 3 and max(lengths[i] for i in order[-3:]) <= 10


def test_text_length_reads_strings_and_conversations():
    assert text_length("abc") == 3
    assert text_length([{"role": "user", "content": "ab"}, {"role": "assistant", "content": "cde"}]) == 5
    assert text_length(None) == 0
