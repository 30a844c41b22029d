"""The evaluation stage: `run(config) -> EvalResult`, read top to bottom.

For each task: load the eval split, then score it by the configured protocol - few-shot
log-likelihood (a causal LM as is), fine-tune (a fresh head per task and seed), or
few-shot fine-tune (a tiny train set, several seeds) - and collect the leaderboard table.

result = run({"model": {"path": "runs/nano/model"}, "data": {"tasks": "rte,cb",
              "benchmark": "superglue", "dir": "data/superglue"}})
print(markdown_table(result))
"""
from __future__ import annotations

import statistics
import time
from typing import Any

import torch

from ..core.config import coerce
from ..core.errors import UserError
from ..adapters.chain import model_folder
from ..core.rundir import RunDir
from . import fewshot
from .config import EvalConfig
from .finetune import finetune_and_score, load_tokenizer
from .loaders import load_split, subsample
from .metrics import benchmark_average, compute, task_score
from .report import EvalResult, TaskResult, write_results
from .tasks import Task, resolve_tasks, train_task

FEWSHOT_TRAIN_SIZE = 32  # FewGLUE's size, used when a task has no fewglue_train32 file


def run(config: EvalConfig | dict | None = None, **sections: Any) -> EvalResult:
    """Evaluate `config.model.path` on the configured tasks; write results.json/results.md
    when `run.dir` is set. Example:

    run(protocol="finetune", model={"path": "minilm"}, data={"tasks": "rte", "dir": "data/glue"})
    """
    cfg = coerce(EvalConfig, config, **sections)
    if cfg.model.path is None:
        raise UserError("no model given", field="model.path", fix="pass --model PATH (a local model folder)")
    # a run directory or an adapter folder: the model it stands for (an adapter merged into its base)
    cfg = cfg.model_copy(update={"model": cfg.model.model_copy(update={"path": str(model_folder(cfg.model.path))})})
    tasks = resolve_tasks(cfg.data.benchmark, cfg.data.tasks)
    # checked now, made once the model and every eval split have loaded: bad input leaves no run
    run_dir = RunDir.create(cfg.run.dir, overwrite=cfg.run.overwrite, make=False) if cfg.run.dir else None
    if cfg.finetune.save and not run_dir:
        raise UserError("finetune.save needs a run directory to save into", field="finetune.save",
                        fix="set run.dir, or drop finetune.save")
    lm = _load_causal_lm(cfg) if cfg.protocol == "fewshot" else None
    splits = {t.name: subsample(_eval_split(cfg, t), cfg.data.eval_limit, cfg.data.seed, t) for t in tasks}
    if run_dir:
        run_dir.start(cfg, seed=cfg.data.seed)
    results = []
    for task in tasks:
        start = time.perf_counter()
        eval_rows = splits[task.name]
        per_seed = _score_task(cfg, task, eval_rows, lm, run_dir)
        result = _summarize(task, len(eval_rows), per_seed, time.perf_counter() - start)
        results.append(result)
        if run_dir:
            run_dir.log_metrics({"task": task.name, "score": result.score, **result.metrics})
    scores = {r.task: r.score for r in results}
    counted = {("mnli" if n.startswith("mnli") else n) for n in scores
               if next(t for t in tasks if t.name == n).in_average}
    result = EvalResult(cfg.data.benchmark, cfg.protocol, cfg.model.path, results,
                        benchmark_average(cfg.data.benchmark, scores), len(counted))
    if run_dir:
        write_results(run_dir, result)
        from ..lifecycle import finish_run

        finish_run(run_dir)  # peak memory, report.md/report.html
    return result


def _eval_split(cfg: EvalConfig, task: Task) -> list[dict]:
    split = cfg.data.split
    if split == "validation" and "validation" not in task.files:  # the diagnostics are test-only
        split = "test"
    return load_split(task, split, data_dir=cfg.data.dir, source=cfg.data.source)


def _train_rows(cfg: EvalConfig, task: Task, seed: int, few: bool) -> list[dict]:
    source = train_task(task)
    if few and "fewglue32" in source.files and cfg.data.source == "local" and cfg.finetune.train_limit is None:
        try:
            return load_split(source, "fewglue32", data_dir=cfg.data.dir)
        except UserError:
            pass  # no FewGLUE file here: draw from the train split below
    rows = load_split(source, "train", data_dir=cfg.data.dir, source=cfg.data.source)
    limit = cfg.finetune.train_limit or (FEWSHOT_TRAIN_SIZE if few else None)
    return subsample(rows, limit, seed, source)


def _demo_rows(cfg: EvalConfig, task: Task) -> list[dict]:
    """Demonstrations come from the train split, or FewGLUE-32 where only that is present."""
    source = train_task(task)
    try:
        return load_split(source, "train", data_dir=cfg.data.dir, source=cfg.data.source)
    except UserError as missing:
        if "fewglue32" not in source.files or cfg.data.source != "local":
            raise
        try:
            return load_split(source, "fewglue32", data_dir=cfg.data.dir)
        except UserError:
            raise missing from None


def _score_task(cfg: EvalConfig, task: Task, eval_rows: list[dict], lm: tuple | None,
                run_dir: RunDir | None) -> list[dict[str, float]]:
    if cfg.protocol == "fewshot":
        model, tokenizer = lm
        demos = _demo_rows(cfg, task) if cfg.fewshot.k else []
        preds = fewshot.predict(model, tokenizer, task, eval_rows, demos=demos, k=cfg.fewshot.k,
                                seed=cfg.fewshot.seed, scoring=cfg.fewshot.scoring,
                                batch_size=cfg.run.batch_size, max_length=cfg.fewshot.max_length,
                                add_bos=cfg.fewshot.add_bos)
        return [compute(task, preds, eval_rows)]
    few = cfg.protocol == "fewshot_finetune"
    out = []
    for seed in cfg.finetune.seeds:
        train_rows = _train_rows(cfg, task, seed, few)
        save_to = run_dir.path / "classifiers" / f"{task.name}-seed{seed}" if run_dir and cfg.finetune.save else None
        out.append(finetune_and_score(cfg.model.path, task, train_rows, eval_rows, cfg.finetune, seed=seed,
                                      tokenizer_path=cfg.model.tokenizer, eval_batch_size=cfg.run.batch_size,
                                      save_to=save_to))
    return out


def _summarize(task: Task, n: int, per_seed: list[dict[str, float]], seconds: float) -> TaskResult:
    names = task.metrics
    mean = {m: statistics.fmean(s[m] for s in per_seed) for m in names}
    task_scores = [task_score(task, s) for s in per_seed]
    std = statistics.stdev(task_scores) if len(task_scores) > 1 else None
    return TaskResult(task.name, task.title, n, mean, statistics.fmean(task_scores), std,
                      per_seed if len(per_seed) > 1 or "train_loss" in per_seed[0] else [], seconds)


def _load_causal_lm(cfg: EvalConfig) -> tuple[torch.nn.Module, Any]:
    from ..core.modelio import check_model_folder, load_model

    check_model_folder(cfg.model.path)  # the model's problems first: the tokenizer usually lives there too
    tokenizer = load_tokenizer(cfg.model.tokenizer or cfg.model.path)
    model = load_model(cfg.model.path)
    if torch.cuda.is_available():
        model.to("cuda")
    model.eval()
    return model, tokenizer
