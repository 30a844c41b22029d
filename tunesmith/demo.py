"""`make demo` / `tunesmith demo`: pretrain -> SFT -> DPO on data shipped with tunesmith, offline.

The demo is the starter pipeline of `tunesmith init run` (one recipe, three stages, each
stage's model feeding the next), run with a before/after measure for every stage:

1. pretrain a nano Llama-style model on the shipped corpus: held-out loss falls;
2. SFT it (full fine-tuning) on the embedded `add` task: exact match on held-out sums rises;
3. DPO it on embedded `brackets`/`upper` pairs: held-out pair accuracy and log-prob margin rise.

About 2 minutes of CPU time on a 2-core machine.
"""
from __future__ import annotations

import yaml
from rich.console import Console
from rich.table import Table

from .core.config import deep_merge, parse_overrides
from .core.rundir import default_run_dir
from .pipeline import run_pipeline
from .recipes import STARTER_PIPELINE

# (pipeline stage name, what the table calls it, metric before training, metric after)
MEASURES = [
    ("base", "held-out loss", "initial_eval_loss", "eval_loss"),
    ("sft", "held-out exact match (add)", "before/exact_match", "after/exact_match"),
    ("dpo", "held-out pair accuracy", "before/pair_accuracy", "after/pair_accuracy"),
    ("dpo", "held-out log-prob margin", "before/logp_margin", "after/logp_margin"),
]


def demo_pipeline(overrides: list[str] | dict | None = None) -> dict:
    """The starter pipeline as a dict, with overrides (`["--run.dir", DIR]` or `{"run": {"dir": DIR}}`) applied."""
    recipe = yaml.safe_load(STARTER_PIPELINE)
    recipe["run"]["dir"] = str(default_run_dir("demo"))
    if isinstance(overrides, list):
        overrides = parse_overrides(overrides)
    return deep_merge(recipe, overrides) if overrides else recipe


def run_demo(overrides: list[str] | dict | None = None, quiet: bool = False) -> dict:
    console = Console(quiet=quiet)
    recipe = demo_pipeline(overrides)
    console.rule("[bold]tunesmith demo: pretrain -> sft -> dpo (offline, CPU)")
    result = run_pipeline(recipe)
    index = {s["name"]: i for i, s in enumerate(result.stages, start=1)}
    table = Table(title="each stage improved its held-out measure")
    for col in ("stage", "measure", "before", "after"):
        table.add_column(col, justify="right" if col in ("before", "after") else "left")
    summary = {}
    for name, title, before, after in MEASURES:
        prefix = f"{index[name]}-{name}/"
        b, a = result.metrics.get(prefix + before), result.metrics.get(prefix + after)
        summary[f"{name}/{title}"] = (b, a)
        table.add_row(name, title, _fmt(b), _fmt(a))
    console.print(table)
    console.print(f"run directory: {result.run_dir}")
    console.print(f"final model (loads with AutoModelForCausalLM): {result.model_path}")
    return summary


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.3f}"
