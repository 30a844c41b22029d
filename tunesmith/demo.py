"""`make demo` / `tunesmith demo`: the end-to-end run on the corpus shipped with tunesmith."""
from __future__ import annotations

from rich.console import Console

from .core.config import load_config
from .core.rundir import default_run_dir
from .pretraining import PretrainConfig, pretrain


def run_demo(overrides: list[str] | None = None, quiet: bool = False) -> dict:
    console = Console(quiet=quiet)
    root = default_run_dir("demo")
    cfg = load_config(PretrainConfig, None, (overrides or []) + ["--run.dir", str(root / "pretrain")])
    console.rule("[bold]1. pretrain a nano Llama-style model on the shipped corpus")
    result = pretrain(cfg)
    m = result.metrics
    console.print(f"validation loss {m['initial_eval_loss']:.3f} -> {m['eval_loss']:.3f} "
                  f"(perplexity {m['perplexity']:.1f}) in {m['train_seconds']:.0f} s, {m['steps']} steps")
    console.print(f"sample: {result.sample!r}")
    console.print(f"model folder (loads with AutoModelForCausalLM): {result.model_path}")
    return {"pretrain": m}
