"""The report's text: one Markdown document per run, and the same document as a
self-contained HTML page (markdown-it renders it; the plots are embedded as base64 PNGs,
the style sheet is inline, nothing is fetched from the network).

md = render_markdown(info, plots, image_ref=lambda p: f"plots/{p.path.name}")
html = render_html(info.name, markdown_for_html)
"""
from __future__ import annotations

import base64
import html
import re
from statistics import mean
from typing import Any, Callable

from markdown_it import MarkdownIt

from .plots import Plot
from .runinfo import RunInfo

ImageRef = Callable[[Plot], str]
# results.json metrics shown first in the summary, when present
HEADLINE = ("eval_loss", "perplexity", "train_loss", "steps", "parameters", "train_seconds")
# shown in the Throughput section instead of the summary
THROUGHPUT_KEYS = {"train_runtime", "train_samples_per_second", "train_steps_per_second", "train_seconds",
                   "total_flos"}

CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;color:#1f2328;
margin:0;background:#f6f8fa;line-height:1.45}
main{max-width:1000px;margin:0 auto;padding:24px 32px;background:#fff;min-height:100vh}
h1{font-size:1.7em;border-bottom:2px solid #d0d7de;padding-bottom:.3em}
h2{font-size:1.35em;border-bottom:1px solid #d0d7de;padding-bottom:.2em;margin-top:1.6em}
h3{font-size:1.1em;margin-top:1.3em}
h4,h5,h6{font-size:1em;margin:1em 0 .4em}
table{border-collapse:collapse;margin:.6em 0;font-size:.92em}
th,td{border:1px solid #d0d7de;padding:4px 10px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
tr:nth-child(even) td{background:#fbfcfd}
code{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.88em;background:#f3f4f6;
padding:1px 4px;border-radius:3px}
pre{background:#f6f8fa;border:1px solid #d0d7de;border-radius:6px;padding:10px 14px;
white-space:pre-wrap;word-break:break-word;max-height:480px;overflow-y:auto}
pre code{background:none;padding:0}
img{width:calc(50% - 10px);height:auto;border:1px solid #eaecef;border-radius:4px;margin:4px 2px}
@media (max-width:800px){img{width:100%}}
p.meta{color:#57606a;font-size:.92em}
"""


def _cell(value: Any) -> str:
    if isinstance(value, float):
        text = f"{value:.4g}" if abs(value) < 1e5 else f"{value:,.0f}"
    elif isinstance(value, int) and not isinstance(value, bool):
        text = f"{value:,}"
    else:
        text = str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[tuple[Any, ...]], header: tuple[str, ...]) -> list[str]:
    """Markdown table lines."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def fence(text: str, lang: str = "") -> list[str]:
    """A code block whose fence is longer than any backtick run inside `text`."""
    longest = max((len(m) for m in re.findall(r"`+", text)), default=0)
    ticks = "`" * max(3, longest + 1)
    return [ticks + lang, text.rstrip("\n"), ticks]


def _summary(info: RunInfo) -> list[str]:
    shown_elsewhere = set(info.environment.get("data") or {}) | THROUGHPUT_KEYS
    res = {k: v for k, v in info.results.items() if k not in shown_elsewhere}
    if not res:
        return []
    keys = [k for k in HEADLINE if k in res] + [k for k in res if k not in HEADLINE]
    return table([(f"`{k}`", res[k]) for k in keys], ("metric", "value"))


def _throughput(info: RunInfo) -> list[tuple[str, Any]]:
    rows: list[tuple[str, Any]] = []
    tps = [r["tokens_per_s"] for r in info.metrics if isinstance(r.get("tokens_per_s"), (int, float))]
    if tps:
        rows += [("tokens / s (mean over logged intervals)", round(mean(tps), 1)),
                 ("tokens / s (last interval)", tps[-1])]
    final = next((r for r in reversed(info.metrics) if "train_runtime" in r), {})
    for key, label in (("train_runtime", "training time (s, Trainer)"),
                       ("train_samples_per_second", "samples / s"),
                       ("train_steps_per_second", "steps / s")):
        if key in final:
            rows.append((label, final[key]))
    if "train_seconds" in info.results:
        rows.append(("training time (s, wall clock)", info.results["train_seconds"]))
    return rows


def _memory(info: RunInfo) -> list[str]:
    labels = {"peak_rss_mb": "peak resident memory (MiB, this process)",
              "peak_cuda_mb": "peak GPU memory allocated by torch (MiB)"}
    if not info.memory:
        return ["Peak memory was not recorded for this run."]
    return table([(labels.get(k, k), v) for k, v in info.memory.items()], ("", "value"))


def _environment(info: RunInfo) -> list[str]:
    env = info.environment
    if not env:
        return []
    keys = ("time", "python", "platform", "processor", "cpu_count", "seed", "dtype", "parameters",
            "git_revision")
    rows = [(k, env[k]) for k in keys if env.get(k) is not None]
    dist = env.get("distributed")
    if isinstance(dist, dict):
        rows.append(("distributed", _distributed(dist)))
    versions = env.get("versions") or {}
    if any(versions.values()):
        rows.append(("versions", ", ".join(f"{name} {v}" for name, v in versions.items() if v)))
    return table(rows, ("", "value"))


def _distributed(dist: dict) -> str:
    """environment.json's "distributed" record in one cell: "none (1 process)", or e.g.
    "FSDP, 8 processes on 1 node, gloo; sharding: version 2, strategy FULL_SHARD"."""
    kind, n, nodes = dist.get("type"), dist.get("processes"), dist.get("nodes")
    if kind == "none":
        return "none (1 process)"
    text = f"{kind}, {n} processes on {nodes} node{'s' if nodes != 1 else ''}"
    if dist.get("backend"):
        text += f", {dist['backend']}"
    sharding = dist.get("sharding")
    if isinstance(sharding, dict):
        text += "; sharding: " + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sharding.items()
                                           if v is not None)
    if dist.get("requested"):
        text += f" ({dist['requested']} was requested)"
    if dist.get("error"):
        text += f" ({dist['error']})"
    return text


def _eval(info: RunInfo) -> list[str]:
    if info.eval_table:
        text = info.eval_table.strip().splitlines()
        return [line for line in text if not line.startswith("# ")]   # our heading replaces theirs
    if info.eval_result:
        from ..eval.report import EvalResult, TaskResult, markdown_table

        data = dict(info.eval_result)
        data["tasks"] = [TaskResult(**t) for t in data["tasks"]]
        return markdown_table(EvalResult(**data)).splitlines()
    return []


def _overview(info: RunInfo) -> tuple[str, str]:
    """(stage, its headline numbers) for the pipeline's overview table."""
    if info.eval_result:
        e = info.eval_result
        avg = e.get("average")
        tasks = ", ".join(f"{t['title']} {t['score']:.1f}" for t in e.get("tasks", []))
        return info.name, f"{e.get('benchmark')} {e.get('protocol')}: {tasks}" + (
            f" (average {avg:.1f})" if isinstance(avg, (int, float)) else "")
    res = info.results
    keys = [k for k in ("eval_loss", "perplexity", "train_loss") if isinstance(res.get(k), (int, float))]
    return info.name, ", ".join(f"{k} {res[k]:.4g}" for k in keys) or "-"


def run_section(info: RunInfo, plots: list[Plot], image_ref: ImageRef, level: int = 2) -> list[str]:
    """The Markdown of one run (headings start at `level`)."""
    h = "#" * level
    out: list[str] = []

    def section(title: str, body: list[str]) -> None:
        if body:
            out.extend([f"{h} {title}", "", *body, ""])

    section("Summary", _summary(info))
    if info.sample:
        section("Sample", fence(info.sample, "text"))
    section("Curves", [" ".join(f"![{p.title}]({image_ref(p)})" for p in plots)] if plots else [])
    if info.eval_result is not None or info.eval_table:
        head = []
        if info.eval_result:
            e = info.eval_result
            head = [f"Benchmark **{e.get('benchmark')}**, protocol **{e.get('protocol')}**, "
                    f"model `{e.get('model')}`; scores x100.", ""]
        section("Evaluation", head + _eval(info))
    rows = _throughput(info)
    section("Throughput", table(rows, ("", "value")) if rows else [])
    if info.metrics or info.memory:
        section("Peak memory", _memory(info))
    data_rows = list((info.environment.get("data") or {}).items())
    data = table(data_rows, ("", "value")) if data_rows else []
    if info.data_card:                  # its own headings move below this section's
        card = re.sub(r"^(#+) ", lambda m: "#" * min(6, level + len(m.group(1))) + " ",
                      info.data_card.strip(), flags=re.M)
        data += ["", *card.splitlines()]
    section("Data", data)
    section("Environment", _environment(info))
    if info.config_text:
        section("Config", fence(info.config_text, "yaml"))
    return out


def render_markdown(info: RunInfo, plots: dict[str, list[Plot]], image_ref: ImageRef) -> str:
    """The whole report: the run itself, then one section per stage. `plots` maps a stage's
    folder name ("" for the top run) to its figures."""
    lines = [f"# Run report: {info.name}", "",
             f"Run directory: `{info.path}`" + (f" · {info.environment['time']}"
                                                if info.environment.get("time") else ""), ""]
    if info.stages:
        lines += ["## Stages", "", *table([_overview(s) for s in info.stages], ("stage", "result")), ""]
    lines += run_section(info, plots.get("", []), image_ref, level=2)
    for stage in info.stages:
        lines += [f"## Stage: {stage.name}", ""]
        lines += run_section(stage, plots.get(stage.name, []), image_ref, level=3)
    return "\n".join(lines).rstrip() + "\n"


def data_uri(plot: Plot) -> str:
    assert plot.path is not None
    return "data:image/png;base64," + base64.b64encode(plot.path.read_bytes()).decode("ascii")


def render_html(title: str, markdown: str) -> str:
    """A standalone page: the Markdown rendered (raw HTML in it is escaped), inline CSS."""
    md = MarkdownIt("commonmark", {"html": False}).enable("table")
    body = md.render(markdown)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n"
            f"<body>\n<main>\n{body}</main>\n</body>\n</html>\n")
