"""Exact and near-duplicate detection over a stream of texts (first occurrence is kept).

Exact duplicates: identical after lower-casing and collapsing whitespace (a 128-bit hash
per kept row). Near duplicates: MinHash signatures over word n-gram shingles (CRC-32 hashed: deterministic and fast), candidates
from datasketch's LSH index, confirmed by the estimated Jaccard similarity against the
kept row. Memory grows with the kept rows (~2 KB each at 128 permutations).

Example:
    >>> from tunesmith.data.config import DedupConfig
    >>> d = Deduplicator(DedupConfig(threshold=0.7))
    >>> d.check("the cat sat on the mat today", "a:1") is None
    True
    >>> d.check("The cat sat on the mat today!", "a:2").kind
    'exact'
"""
from __future__ import annotations

import hashlib
import re
import zlib
from dataclasses import dataclass

from datasketch import LeanMinHash, MinHash, MinHashLSH

from .config import DedupConfig

WORD = re.compile(r"\w+")


@dataclass
class Duplicate:
    """A dropped row: which kept row it duplicates, how, and how similar (1.0 for exact)."""

    kind: str
    kept: str
    similarity: float


def shingles(text: str, n: int) -> set[bytes]:
    """Word n-grams of the lower-cased text; character n-grams when it has fewer than n words
    (short texts, scripts written without spaces).

    Example:
        >>> sorted(shingles("a b c", 2))
        [b'a b', b'b c']
    """
    words = WORD.findall(text.lower())
    if len(words) >= n:
        return {" ".join(words[i:i + n]).encode() for i in range(len(words) - n + 1)}
    joined = " ".join(words)
    if len(joined) <= n:
        return {joined.encode()}
    return {joined[i:i + n].encode() for i in range(len(joined) - n + 1)}


class Deduplicator:
    """Remembers kept rows; `check(text, ref)` returns a Duplicate, or None (and keeps the row)."""

    def __init__(self, cfg: DedupConfig):
        self.cfg = cfg
        self.exact: dict[bytes, str] = {}
        # weights favour recall: LSH candidates are confirmed against the kept row's signature below,
        # so a false candidate costs one comparison while a missed one leaves a duplicate in the data
        self.lsh = MinHashLSH(threshold=cfg.threshold, num_perm=cfg.num_perm, weights=(0.05, 0.95)) if cfg.near else None
        self.signatures: dict[str, LeanMinHash] = {}
        template = MinHash(num_perm=cfg.num_perm, seed=1, hashfunc=zlib.crc32)
        self._permutations, self._scheme = template.permutations, template.scheme

    def _signature(self, text: str) -> LeanMinHash:
        m = MinHash(num_perm=self.cfg.num_perm, seed=1, hashfunc=zlib.crc32, permutations=self._permutations,
                    scheme=self._scheme)
        m.update_batch(list(shingles(text, self.cfg.shingle)))
        return LeanMinHash(m)

    def check(self, text: str, ref: str) -> Duplicate | None:
        if self.cfg.exact:
            key = hashlib.blake2b(" ".join(WORD.findall(text.lower())).encode(), digest_size=16).digest()
            if key in self.exact:
                return Duplicate("exact", self.exact[key], 1.0)
            self.exact[key] = ref
        if self.lsh is not None:
            sig = self._signature(text)
            best: tuple[float, str] | None = None
            for other in self.lsh.query(sig):
                sim = sig.jaccard(self.signatures[other])
                if sim >= self.cfg.threshold and (best is None or sim > best[0]):
                    best = (sim, other)
            if best is not None:
                return Duplicate("near", best[1], round(best[0], 3))
            if ref not in self.signatures:
                self.lsh.insert(ref, sig)
                self.signatures[ref] = sig
        return None
