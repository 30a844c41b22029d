"""The model card (README.md) of a pushed run: YAML metadata made with huggingface_hub's
`ModelCardData` (base_model, library_name, pipeline_tag, tags, datasets, license and a
`model-index` with the run's evaluation results), then a short Markdown body.

print(model_card("runs/sft", {"repo": "alice/tiny-sft", "license": "apache-2.0"}))
# -> ---
# -> base_model: HuggingFaceTB/SmolLM2-135M
# -> library_name: peft

"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from ..core.config import coerce
from ..core.errors import UserError
from ..core.modelio import hub_source, parse_hub_id
from ..report.runinfo import RunInfo, read_run
from .config import PushConfig

BENCHMARK_DATASETS = {"glue": ("nyu-mll/glue", "GLUE"), "superglue": ("aps/super_glue", "SuperGLUE")}
# results.json keys that are timings, not quality
NOT_QUALITY = {"eval_runtime", "eval_samples_per_second", "eval_steps_per_second", "eval_model_preparation_time"}
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# = tunesmith.adapters.artifacts.RECORD; read here without importing torch/peft, so a push that
# fails early (no token, bad repo) answers at once
ADAPTER_RECORD = "tunesmith_adapter.json"
TRAIN_KEYS = ("lr", "schedule", "max_steps", "epochs", "batch_size", "warmup_steps", "weight_decay", "seed")


@dataclass
class Artifact:
    """What a push uploads from a run: the trained folder and what kind of model it is."""

    run: RunInfo                 # the run (or pipeline stage) that produced it
    folder: Path
    is_adapter: bool
    record: dict[str, Any]       # tunesmith_adapter.json (adapters), else {}
    pipeline_tag: str
    local_base: str | None       # the base folder recorded by the adapter


def find_artifact(info: RunInfo) -> Artifact:
    """The model of a run; for a pipeline, that of the last stage which saved one."""
    candidates = [info, *reversed(info.stages)]
    run = next((r for r in candidates if r.model_dir is not None), None)
    if run is None:
        raise UserError("nothing to push: the run has no model/ or adapter/ folder", file=info.path,
                        fix="push the run directory of a training stage (an eval run holds no model)")
    folder = run.model_dir
    assert folder is not None
    is_adapter = (folder / "adapter_config.json").is_file()
    record: dict[str, Any] = {}
    if is_adapter:
        if (folder / ADAPTER_RECORD).is_file():
            record = json.loads((folder / ADAPTER_RECORD).read_text())
        else:                                  # a stock PEFT folder
            from ..adapters.artifacts import read_record

            record = read_record(folder)
        seq_cls = (record.get("adapter") or {}).get("task") == "seq_cls"
    else:
        if not (folder / "config.json").is_file():
            raise UserError("the model folder has no config.json", file=folder,
                            fix="push a folder written by save_pretrained")
        archs = json.loads((folder / "config.json").read_text()).get("architectures") or [""]
        seq_cls = archs[0].endswith("ForSequenceClassification")
    return Artifact(run, folder, is_adapter, record,
                    "text-classification" if seq_cls else "text-generation",
                    record.get("base") if is_adapter else None)


def _hub_models(artifact: Artifact) -> dict[str, str]:
    """The Hub models the run resolved (environment.json `models`): repo id -> commit."""
    models = artifact.run.environment.get("models") or {}
    return {m["repo"]: str(m.get("commit")) for m in models.values() if isinstance(m, dict) and m.get("repo")}


def _named_hub_model(artifact: Artifact) -> str | None:
    """The model the run's config names (`model.path`, `model.from_pretrained`, transfer's `model`)
    when it is a Hub snapshot folder, or a Hub id the run resolved (environment.json says so: a
    relative local path that merely looks like owner/name is not taken for one)."""
    model = _config(artifact.run).get("model")
    if isinstance(model, dict):
        model = model.get("path") or model.get("from_pretrained")
    if not isinstance(model, str):
        return None
    source = hub_source(model)  # a stage that wrote the resolved snapshot folder into config.yaml
    if source is not None:
        return source[0]
    parsed = parse_hub_id(model)
    return parsed[0] if parsed and parsed[0] in _hub_models(artifact) else None


def hub_base_model(artifact: Artifact, cfg: PushConfig | None) -> str | None:
    """`cfg.base_model`, else the adapter's recorded base when that is a Hub id or a Hub snapshot in
    the Hugging Face cache (not a local folder); a full model trained from a Hub model names that."""
    if cfg is not None and cfg.base_model:
        return cfg.base_model
    if not artifact.is_adapter:
        return _named_hub_model(artifact)
    base = artifact.local_base
    source = hub_source(base)
    if source is not None:
        return source[0]
    if base and not Path(base).exists() and _REPO_ID.match(base):
        return base
    return None


def hub_base_commit(artifact: Artifact, base: str | None) -> str | None:
    """The commit of the Hub base `base` the run trained on, when known: the adapter's record
    (`base_revision`) or snapshot folder, else the run's environment.json `models`."""
    if not base:
        return None
    if artifact.is_adapter and artifact.local_base == base and artifact.record.get("base_revision"):
        return str(artifact.record["base_revision"])
    source = hub_source(artifact.local_base)
    if source is not None and source[0] == base:
        return source[1]
    return _hub_models(artifact).get(base)


def _training_results(run: RunInfo, task_type: str, datasets: list[str]) -> list[EvalResult]:
    res = run.results
    metrics = {k.removeprefix("eval_"): v for k, v in res.items()
               if k.startswith("eval_") and k not in NOT_QUALITY and isinstance(v, (int, float))}
    if isinstance(res.get("perplexity"), (int, float)):
        metrics["perplexity"] = res["perplexity"]
    dataset = datasets[0] if datasets else "local"
    return [EvalResult(task_type=task_type, dataset_type=dataset, dataset_name="held-out split of the training data",
                       dataset_split="validation", metric_type=name, metric_value=round(float(value), 6))
            for name, value in metrics.items()]


def _benchmark_results(eval_result: dict[str, Any]) -> list[EvalResult]:
    dataset_id, title = BENCHMARK_DATASETS.get(eval_result.get("benchmark", ""), (eval_result.get("benchmark"), None))
    protocol = eval_result.get("protocol")
    out = []
    for task in eval_result.get("tasks", []):
        for metric, value in task["metrics"].items():
            out.append(EvalResult(task_type="text-classification", dataset_type=str(dataset_id),
                                  dataset_name=f"{title or dataset_id} {task['title']}",
                                  dataset_config=task["task"], dataset_split="validation",
                                  metric_type=metric, metric_value=round(float(value), 6),
                                  metric_name=f"{metric} ({protocol})" if protocol else metric))
    return out


def collect_eval_results(info: RunInfo, artifact: Artifact, cfg: PushConfig | None) -> list[EvalResult]:
    """The model-index entries: the trained run's held-out metrics, every eval stage of a
    pipeline, and the eval runs named in `cfg.eval_runs`."""
    datasets = cfg.datasets if cfg else []
    out = _training_results(artifact.run, artifact.pipeline_tag, datasets)
    evals = [s for s in [info, *info.stages] if s.eval_result]
    for path in (cfg.eval_runs if cfg else []):
        run = read_run(path)
        found = [s for s in [run, *run.stages] if s.eval_result]
        if not found:
            raise UserError("not an eval run: its results.json holds no benchmark tasks", file=path,
                            field="eval_runs", fix="give the run.dir of a `tunesmith eval` run")
        evals += found
    for e in evals:
        out += _benchmark_results(e.eval_result or {})
    return out


def _usage(artifact: Artifact, repo: str, merged: bool, base: str | None) -> list[str]:
    cls = "SequenceClassification" if artifact.pipeline_tag == "text-classification" else "CausalLM"
    if artifact.is_adapter and not merged:
        if base:
            code = [f"from peft import AutoPeftModelFor{cls}", "",
                    f'model = AutoPeftModelFor{cls}.from_pretrained("{repo}")']
        else:
            code = ["from peft import PeftModel", f"from transformers import AutoModelFor{cls}", "",
                    'base = AutoModelFor' + cls + '.from_pretrained("PATH/TO/BASE")  # the base it was trained on',
                    f'model = PeftModel.from_pretrained(base, "{repo}")']
    else:
        code = [f"from transformers import AutoModelFor{cls}, AutoTokenizer", "",
                f'model = AutoModelFor{cls}.from_pretrained("{repo}")',
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")']
    return ["## Usage", "", "```python", *code, "```", ""]


def _training(artifact: Artifact) -> list[str]:
    run = artifact.run
    train = _config(run).get("train") or {}
    rows = [(k, train[k]) for k in TRAIN_KEYS if train.get(k) is not None]
    env = run.environment
    rows += [(k, env[k]) for k in ("dtype", "parameters") if env.get(k) is not None]
    if artifact.is_adapter:
        adapter = artifact.record.get("adapter") or {}
        rows += [(f"adapter {k}", adapter[k]) for k in ("method", "r", "alpha", "quantize") if adapter.get(k)]
    if not rows:
        return []
    return ["## Training", "", "| setting | value |", "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows], ""]


def _eval_table(results: list[EvalResult]) -> list[str]:
    if not results:
        return []
    lines = ["## Evaluation", "", "| dataset | split | metric | value |", "|---|---|---|---|"]
    lines += [f"| {r.dataset_name} | {r.dataset_split} | {r.metric_name or r.metric_type} | {r.metric_value:.4g} |"
              for r in results]
    return lines + [""]


def _config(run: RunInfo) -> dict[str, Any]:
    import yaml

    try:
        config = yaml.safe_load(run.config_text) if run.config_text else {}
    except yaml.YAMLError:
        config = {}
    return config if isinstance(config, dict) else {}


def _origin(artifact: Artifact, base: str | None) -> str:
    """Where the weights come from, for the card's first sentence."""
    if base:
        commit = hub_base_commit(artifact, base)
        at = f" at commit [`{commit[:12]}`](https://huggingface.co/{base}/tree/{commit})" if commit else ""
        return f"on top of [`{base}`](https://huggingface.co/{base}){at}"
    local = artifact.local_base
    model = _config(artifact.run).get("model") or {}
    if local is None and isinstance(model, dict):
        local = model.get("path") or model.get("from_pretrained")
        if local is None and model.get("family"):
            return "trained from scratch"
    return f"on top of a local base model (`{'/'.join(Path(local).parts[-2:])}`)" if local else ""


def build_card(info: RunInfo, artifact: Artifact, cfg: PushConfig | None, *, merged: bool,
               report_link: str | None) -> ModelCard:
    """The ModelCard object (metadata + body) for `artifact`."""
    repo = cfg.repo if cfg else info.name
    base = hub_base_model(artifact, cfg)
    results = collect_eval_results(info, artifact, cfg)
    tags = ["tunesmith"]
    method = (artifact.record.get("adapter") or {}).get("method")
    if artifact.is_adapter and method:
        tags.append(str(method))
    if merged:
        tags.append("merge")
    data = ModelCardData(
        base_model=base, library_name="peft" if artifact.is_adapter and not merged else "transformers",
        pipeline_tag=artifact.pipeline_tag, tags=tags, datasets=(cfg.datasets or None) if cfg else None,
        license=cfg.license if cfg else None, model_name=repo.split("/")[-1],
        eval_results=results or None)
    kind = ("a merged model (adapter folded into its base)" if merged else
            "a PEFT adapter" if artifact.is_adapter else "a full model")
    base_text = _origin(artifact, base)
    body = [f"# {repo.split('/')[-1]}", "",
            f"This repository holds {kind}{' ' + base_text if base_text else ''}, trained with "
            f"tunesmith (run `{artifact.run.name}`).", "",
            *_usage(artifact, repo, merged, base), *_training(artifact), *_eval_table(results)]
    if report_link:
        body += ["## Training report", "", f"Loss and learning-rate curves, throughput, memory, config and "
                 f"data card: [{report_link}]({report_link}).", ""]
    versions = artifact.run.environment.get("versions") or {}
    if versions:
        body += ["## Framework versions", "", *[f"- {k} {v}" for k, v in versions.items() if v], ""]
    return ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body))


def model_card(run_dir: str | os.PathLike, config: PushConfig | dict | None = None, *,
               merged: bool | None = None, report_link: str | None = None) -> str:
    """The README.md text for pushing `run_dir` (metadata + body), without pushing anything.

    text = model_card("runs/sft", {"repo": "alice/tiny-sft", "datasets": ["tatsu-lab/alpaca"]})
    "library_name: peft" in text
    # -> True
    """
    cfg = coerce(PushConfig, config) if config is not None else None
    info = read_run(run_dir)
    artifact = find_artifact(info)
    use_merged = merged if merged is not None else bool(cfg and cfg.merged)
    return str(build_card(info, artifact, cfg, merged=use_merged and artifact.is_adapter, report_link=report_link))
