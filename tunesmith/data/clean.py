"""Text cleaning and language-agnostic quality filters over internal rows.

Cleaning touches every text field of a row (text, text_pair, every message content) and
never labels or roles. Filters look at the row's whole text and return the reason a row
is dropped, which the data card and the filtered-rows report record.

Example:
    >>> from tunesmith.data.config import CleanConfig
    >>> clean_text("caf\\u0065\\u0301\\u200b  \\r\\n\\n\\n\\nbar  ", CleanConfig())
    'café\\n\\nbar'
"""
from __future__ import annotations

import re
import unicodedata
from typing import Any, Callable

from .config import CleanConfig

# C0/C1 controls except \t and \n; zero-width space, word joiner, BOM, soft hyphen, bidi
# embeddings/overrides/isolates. ZWJ/ZWNJ are kept: emoji sequences and Persian/Indic need them.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u2060\ufeff\u00ad\u202a-\u202e\u2066-\u2069]")
NBSP = re.compile("[\u00a0\u2007\u202f]")
TRAILING = re.compile(r"[ \t]+\n")
BLANKS = re.compile(r"\n{3,}")


def clean_text(text: str, cfg: CleanConfig) -> str:
    """Normalize one string as configured."""
    if cfg.unicode != "none":
        text = unicodedata.normalize(cfg.unicode, text)
    if cfg.whitespace:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    if cfg.strip_control:
        text = CONTROL.sub("", text)
    if cfg.whitespace:
        text = NBSP.sub(" ", text)
        text = TRAILING.sub("\n", text)
        text = BLANKS.sub("\n\n", text).strip()
    return text


def map_texts(row: dict[str, Any], fn: Callable[[str], str]) -> dict[str, Any]:
    """A copy of an internal row with `fn` applied to every text (not to labels or roles).

    Example:
        >>> map_texts({"messages": [{"role": "user", "content": "a"}]}, str.upper)
        {'messages': [{'role': 'user', 'content': 'A'}]}
    """
    out = dict(row)
    for key, value in row.items():
        if key in ("text", "text_pair") and isinstance(value, str):
            out[key] = fn(value)
        elif isinstance(value, list):
            out[key] = [{**m, "content": fn(m["content"])} for m in value]
    return out


def row_text(row: dict[str, Any]) -> str:
    """All the text of an internal row, joined by newlines (for filters and dedup keys)."""
    parts: list[str] = []
    for key, value in row.items():
        if key in ("text", "text_pair") and isinstance(value, str):
            parts.append(value)
        elif isinstance(value, list):
            parts += [m["content"] for m in value]
    return "\n".join(parts)


def _alpha_ratio(text: str) -> float:
    chars = [c for c in text if not c.isspace()]
    return sum(c.isalpha() for c in chars) / len(chars) if chars else 0.0


def _repeated_line_ratio(text: str) -> float:
    lines = [l.strip() for l in text.split("\n") if l.strip()]
    if len(lines) < 4:
        return 0.0
    return 1 - len(set(lines)) / len(lines)


def _longest_run(text: str) -> int:
    best = run = 0
    prev = None
    for c in text:
        run = run + 1 if c == prev else 1
        prev = c
        best = max(best, run)
    return best


def filter_reason(row: dict[str, Any], cfg: CleanConfig) -> str | None:
    """Why the row fails a quality filter (e.g. "min_chars: 0 < 1"), or None if it passes.
    Empty fields are reported too: cleaning can empty a field that was only whitespace."""
    for key, value in row.items():
        if key in ("text", "text_pair") and isinstance(value, str) and not value:
            return f"{key} is empty after cleaning"
        if isinstance(value, list) and any(not m["content"] and not m.get("tool_calls") for m in value):
            return f"a {key} turn is empty after cleaning"
    text = row_text(row)
    n = len(text)
    if n < cfg.min_chars:
        return f"min_chars: {n} < {cfg.min_chars}"
    if cfg.max_chars is not None and n > cfg.max_chars:
        return f"max_chars: {n} > {cfg.max_chars}"
    if cfg.min_alpha_ratio > 0 and (r := _alpha_ratio(text)) < cfg.min_alpha_ratio:
        return f"min_alpha_ratio: {r:.2f} < {cfg.min_alpha_ratio}"
    if cfg.max_repeated_line_ratio < 1 and (r := _repeated_line_ratio(text)) > cfg.max_repeated_line_ratio:
        return f"max_repeated_line_ratio: {r:.2f} > {cfg.max_repeated_line_ratio}"
    if cfg.max_char_run is not None and (r := _longest_run(text)) > cfg.max_char_run:
        return f"max_char_run: {r} > {cfg.max_char_run}"
    return None


def clean_row(row: dict[str, Any], cfg: CleanConfig) -> tuple[dict[str, Any], str | None]:
    """(cleaned row, reason to drop it or None)."""
    if not cfg.enabled:
        return row, None
    cleaned = map_texts(row, lambda t: clean_text(t, cfg))
    return cleaned, filter_reason(cleaned, cfg)
