"""The evaluation stage's typed config: the one place its defaults live.

Filled by a YAML recipe, dotted flags (`--data.tasks sst2,rte --finetune.train_limit 2000`)
or the Python API:

cfg = coerce(EvalConfig, {"model": {"path": "runs/x/model"}, "data": {"tasks": "rte"}})
cfg.protocol
# -> 'fewshot'
"""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..adapters.config import AdapterConfig
from ..core.config import Section


class ModelSection(Section):
    path: str | None = Field(None, description="local model folder (a causal LM for fewshot; any "
                                                "encoder or decoder for finetune), a run directory, or an "
                                                "adapter folder (merged into its recorded base once)")
    tokenizer: str | None = Field(None, description="tokenizer folder (default: the model folder)")


class DataSection(Section):
    benchmark: Literal["glue", "superglue"] = Field("glue", description="which benchmark the tasks belong to")
    tasks: list[str] | str = Field("all", description="comma-separated task names, or all "
                                                      "(e.g. cola,sst2,mrpc,stsb,rte or boolq,cb,copa)")
    source: Literal["local", "hub"] = Field("local", description="local: official-layout files in "
                                            "data.dir; hub: nyu-mll/glue and aps/super_glue (online)")
    dir: str | None = Field(None, description="local benchmark folder (e.g. data/glue; a parent holding "
                                              "glue/ and superglue/ also works)")
    split: str = Field("validation", description="split to score (validation; test for AX, AX-b, AX-g)")
    eval_limit: int | None = Field(None, ge=1, description="score at most N rows (seeded subsample)")
    seed: int = Field(0, description="seed for subsampling rows")


class FinetuneSection(Section):
    adapter: AdapterConfig = Field(default_factory=lambda: AdapterConfig(task="seq_cls", rank=8),
                                   description="adapter block (method lora|full|...; task is forced to seq_cls)")
    pooling: Literal["auto", "model", "mean"] = Field(
        "auto", description="how a sequence becomes logits: model (the checkpoint's own classification "
                            "head: BERT's [CLS] pooler, a decoder's last token), mean (mean of the last "
                            "hidden states over real tokens -> linear), auto (mean for a mean-pooling "
                            "sentence-transformers folder, else model)")
    epochs: float | None = Field(None, gt=0, description="training epochs (default: the task's, 3-10)")
    max_steps: int | None = Field(None, ge=1, description="stop after N optimizer steps (overrides epochs)")
    lr: float | None = Field(None, gt=0, description="peak learning rate (default: the task's, by adapter method)")
    max_length: int | None = Field(None, ge=8, description="tokens per example (default: the task's, 128-256)")
    batch_size: int | None = Field(None, ge=1, description="training batch size (default: the task's)")
    train_limit: int | None = Field(None, ge=1, description="train on at most N rows (seeded subsample); "
                                                            "fewshot_finetune default 32")
    class_weights: Literal["none", "balanced"] = Field(
        "none", description="balanced: weight each class's cross-entropy by n / (classes * count), as "
                            "scikit-learn's class_weight='balanced' (for skewed label sets such as CoLA, "
                            "scored by MCC); none: plain cross-entropy")
    layer_lr_decay: float = Field(1.0, gt=0, le=1, description="layer-wise learning-rate decay: the head "
                                  "trains at lr, each block below at this times the rate of the block "
                                  "above, the embeddings least (ELECTRA/DeBERTa GLUE recipes use 0.8-0.9); "
                                  "1 = one rate for all")
    warmup_ratio: float = Field(0.06, ge=0, lt=1, description="share of steps spent warming up")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    seeds: list[int] = Field(default_factory=lambda: [42], description="one run per seed; the report gives "
                                                                       "mean and std (use 3+ for few-shot)")
    save: bool = Field(False, description="keep each fine-tuned classifier in <run.dir>/classifiers/"
                                          "<task>-seed<N> (PEFT adapter or model folder + head; load it "
                                          "with tunesmith.eval.heads.load_classifier)")


class FewshotSection(Section):
    k: int = Field(0, ge=0, description="demonstrations per prompt, drawn from the train split")
    seed: int = Field(1234, description="seed for drawing demonstrations")
    scoring: Literal["loglik", "calibrated"] = Field(
        "loglik", description="loglik: sum log-probability of each verbalizer; calibrated: contextual "
                              "calibration (content-free input) for label tasks, domain-conditional PMI "
                              "for COPA/ReCoRD")
    max_length: int | None = Field(None, ge=16, description="truncate prompts from the left to N tokens "
                                                            "(default: the model's context)")
    add_bos: Literal["auto"] | bool = Field(
        "auto", description="auto: start each prompt with BOS only if the tokenizer adds one (as "
                            "lm-evaluation-harness does); true/false: always/never")


class EvalRunSection(Section):
    dir: str | None = Field(None, description="run directory for results.json and results.md "
                                              "(default: none, print only)")
    overwrite: bool = Field(False, description="allow writing into a non-empty run directory")
    batch_size: int = Field(64, ge=1, description="evaluation batch size (length-sorted, dynamic padding)")


class EvalConfig(Section):
    protocol: Literal["fewshot", "finetune", "fewshot_finetune"] = Field(
        "fewshot", description="fewshot: score a causal LM by verbalizer log-likelihood; finetune: train a "
                               "head per task then score; fewshot_finetune: finetune on a tiny train set "
                               "(FewGLUE-32 where present) over several seeds")
    model: ModelSection = Field(default_factory=ModelSection)
    data: DataSection = Field(default_factory=DataSection)
    finetune: FinetuneSection = Field(default_factory=FinetuneSection)
    fewshot: FewshotSection = Field(default_factory=FewshotSection)
    run: EvalRunSection = Field(default_factory=EvalRunSection)
