"""The data card: a Markdown page with counts before/after each step and a length histogram.

Example:
    print(render_card(result.card))
"""
from __future__ import annotations

from typing import Any

from .formats import FORMAT_KIND


def _bar(count: int, top: int, width: int = 40) -> str:
    return "#" * max(1 if count else 0, round(width * count / top)) if top else ""


def mixing_line(sources: list[dict[str, Any]], mixing: dict[str, Any]) -> str:
    """One sentence on what mixing dropped (and repeated), per input."""
    if not mixing["weighted"]:
        return "Mixing: inputs concatenated, no rows dropped."
    line = f"Weighted mixing (stopping: {mixing['stopping']}) dropped {mixing['dropped']} rows"
    if mixing["dropped"]:
        line += " (" + ", ".join(f"{s['path']}: {s['mixing_dropped']} of {s['rows'] - s['limit_dropped']}"
                                 for s in sources if s["mixing_dropped"]) + ")"
    if mixing["repeated"]:
        line += f" and repeated {mixing['repeated']} rows (" + ", ".join(
            f"{s['path']}: {s['mixing_repeated']}" for s in sources if s["mixing_repeated"]) + ")"
    return line + "."


def _sources(sources: list[dict[str, Any]], mixing: dict[str, Any]) -> list[str]:
    header = ("| input | weight | rows kept | dropped by limit | rows in the mix | dropped by mixing "
              "| repeated by mixing |")
    lines = ["", "## Sources", "", header, "|---|---:|---:|---:|---:|---:|---:|"]
    lines += [f"| `{s['path']}` | {'' if s['weight'] is None else s['weight']} | {s['rows']} | {s['limit_dropped']} | "
              f"{s['mixed']} | {s['mixing_dropped']} | {s['mixing_repeated']} |" for s in sources]
    return lines + ["", mixing_line(sources, mixing)]


def render_card(card: dict[str, Any]) -> str:
    """Markdown for `data_card.md` from the card dict `prepare` builds."""
    s = card["steps"]
    lines = ["# Data card", "", "## Inputs", "", "| input | format | kind |", "|---|---|---|"]
    lines += [f"| `{src}` | {fmt} | {FORMAT_KIND[fmt]} |" for src, fmt in card["formats"].items()]
    after_bad = s["rows_read"] - s["bad_rows_skipped"]
    after_filter = after_bad - s["filtered"]
    lines += ["", f"Internal form: **{card['kind']}**, columns {', '.join(card['columns'])}.", "",
              "## Steps", "", "| step | rows removed | rows after |", "|---|---:|---:|",
              f"| read | | {s['rows_read']} |",
              f"| bad rows skipped (skipped_rows.jsonl) | {s['bad_rows_skipped']} | {after_bad} |",
              f"| cleaning filters (filtered_rows.jsonl) | {s['filtered']} | {after_filter} |",
              f"| exact duplicates (duplicates.jsonl) | {s['exact_duplicates']} | {after_filter - s['exact_duplicates']} |",
              f"| near duplicates (duplicates.jsonl) | {s['near_duplicates']} | {s['rows_kept']} |"]
    mixing = card.get("mixing")
    if mixing:
        after_mix = s["rows_kept"] - mixing["limit_dropped"] - mixing["dropped"] + mixing["repeated"]
        how = f"weighted mixing, {mixing['stopping']}" if mixing["weighted"] else "inputs concatenated"
        lines += [f"| per-input limit | {mixing['limit_dropped']} | {s['rows_kept'] - mixing['limit_dropped']} |",
                  f"| mixing ({how}) | {mixing['dropped']} | {after_mix} |",
                  f"| split.max_rows sample | {mixing['max_rows_dropped']} | {mixing['rows']} |"]
    if s["filter_reasons"]:
        lines += ["", "Filtered by: " + ", ".join(f"{k} {v}" for k, v in sorted(s["filter_reasons"].items()))]
    if s["pii_replaced"]:
        lines += ["", "PII replaced: " + ", ".join(f"{k} {v}" for k, v in sorted(s["pii_replaced"].items()))]
    if card.get("sources"):
        lines += _sources(card["sources"], card["mixing"])
    lines += ["", "## Splits", "", "| split | rows |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in card["splits"].items()]
    ls = card["lengths"]
    if ls.get("rows"):
        lines += ["", f"## Length of train rows ({ls['unit']})", "",
                  f"mean {ls['mean']}, p50 {ls['p50']}, p90 {ls['p90']}, p95 {ls['p95']}, p99 {ls['p99']}, max {ls['max']}"]
        if "max_length" in ls:
            lines.append(f"; {ls['too_long']} rows longer than max_length {ls['max_length']} "
                         f"(by {ls['excess_mean']} on average, {ls['excess_max']} at most)")
        top = max(c for _, _, c in card["histogram"])
        lines += ["", "```"] + [f"{lo:>8} - {hi:<8} {c:>8} {_bar(c, top)}" for lo, hi, c in card["histogram"]] + ["```"]
    return "\n".join(lines) + "\n"
