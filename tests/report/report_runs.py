"""Real run directories for the report and hub tests, built once per test session:
a tiny pretrain run, an SFT (LoRA adapter) run on its model, and an eval run, laid out as
a pipeline folder `pipe/1-pretrain`, `pipe/2-sft`, `pipe/3-eval` (~15 s in all)."""
from __future__ import annotations

import shutil
from pathlib import Path

from helpers import tiny_config, write_corpus

_CACHE: dict[str, Path] = {}
EVAL_METRICS = {"rte": {"accuracy": 0.625}, "cb": {"accuracy": 0.5, "f1": 0.25}}


def _eval_run(path: Path, model: Path) -> None:
    """An eval run directory as tunesmith.eval writes it (results.json, results.md, metrics).
    The scores are fixed numbers, so the card's model-index can be checked against them."""
    from tunesmith.core.rundir import RunDir
    from tunesmith.eval.report import EvalResult, TaskResult, write_results

    run = RunDir.create(path)
    run.write_config({"protocol": "fewshot", "model": {"path": str(model)}})
    run.write_environment(seed=0)
    tasks = [TaskResult("rte", "RTE", 16, EVAL_METRICS["rte"], 62.5),
             TaskResult("cb", "CB", 16, EVAL_METRICS["cb"], 37.5)]
    for t in tasks:
        run.log_metrics({"task": t.task, "score": t.score, **t.metrics})
    write_results(run, EvalResult("superglue", "fewshot", str(model), tasks, 50.0, 2))


def pipeline_runs(root: Path) -> Path:
    """The pipeline folder (built on first call, then reused)."""
    if "pipe" in _CACHE:
        return _CACHE["pipe"]
    import tunesmith as ts
    from tunesmith.alignment.sft import sft

    pipe = root / "pipe"
    corpus = write_corpus(root / "corpus.txt", 60)
    pre = ts.pretrain(tiny_config(root, corpus, run={"dir": str(pipe / "1-pretrain")},
                                  train={"eval_steps": 5, "logging_steps": 2}))
    sft(model={"path": str(pre.model_path)},
        tasks={"names": ["upper"], "train_rows": 32, "eval_rows": 4, "max_new_tokens": 2},
        train={"max_steps": 3, "batch_size": 8, "logging_steps": 1, "dtype": "fp32"},
        run={"dir": str(pipe / "2-sft")})
    _eval_run(pipe / "3-eval", pre.model_path)
    _CACHE["pipe"] = pipe
    return pipe


def copy_run(src: Path, dest: Path) -> Path:
    """A private copy (tests that write reports or mutate files must not share one)."""
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints"))
    return dest
