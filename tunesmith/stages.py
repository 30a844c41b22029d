"""The stage table: every stage tunesmith runs, listed once.

The CLI (one command per stage), pipelines (`stage: NAME`), the public API (`ts.sft`,
`ts.SFTConfig`), `tunesmith init` and `tunesmith plan` all read `STAGES`; adding a stage is
one entry here. References are "module:attribute" strings imported on first use, so reading
the table (`import tunesmith`, the CLI's top-level --help) imports no stage module and no torch.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Literal


def load(ref: str) -> Any:
    """"package.module:name" -> the object (its module imported on first use)."""
    module, name = ref.split(":")
    return getattr(importlib.import_module(module), name)


@dataclass(frozen=True)
class Stage:
    config: str                  # "module:Class": the stage's typed config, the one home of its defaults
    function: str                # "module:function": `function(config) -> result`
    help: str                    # one line, for `tunesmith --help` and the docs
    kind: Literal["train", "eval"]
    api: str = ""                # its name under `tunesmith.` when not the stage name
    model_key: str = "model.path"  # where a pipeline hands this stage the previous stage's model
    # the config key holding tokens per sequence (memory plan, data check); several keys add up
    # (rlhf: prompt + generated tokens; the data check then reads the first, the prompt's)
    length_key: str | tuple[str, ...] | None = None
    adapter_optimizer: bool = True   # whether the stage trains with `adapter.optimizer` (every stage with an adapter)

    def seq_len(self, cfg: Any) -> int | None:
        """Tokens per sequence as `cfg` sets them (None when the stage or the config has no length)."""
        from .core.config import lookup

        keys = (self.length_key,) if isinstance(self.length_key, str) else self.length_key or ()
        values = [lookup(cfg, k) for k in keys]
        return sum(values) if values and None not in values else None

    @property
    def data_length_key(self) -> str | None:
        """The key rows of the stage's data are checked against."""
        return self.length_key if isinstance(self.length_key, str) else (self.length_key or (None,))[0]

    @property
    def config_name(self) -> str:
        return self.config.split(":")[1]

    def config_class(self) -> type:
        return load(self.config)

    def run(self, config: Any) -> Any:
        return load(self.function)(config)


STAGES: dict[str, Stage] = {
    "pretrain": Stage("tunesmith.pretraining.config:PretrainConfig", "tunesmith.pretraining.stage:pretrain",
                      "train a causal LM from scratch (or continue one) on a text corpus", "train",
                      model_key="model.from_pretrained", length_key="data.block_size", adapter_optimizer=False),
    "sft": Stage("tunesmith.alignment.sft:SFTConfig", "tunesmith.alignment.sft:sft",
                 "instruction-tune on any instruction/chat format (loss on assistant turns, packing)", "train",
                 length_key="sft.max_length"),
    "dpo": Stage("tunesmith.alignment.preference:DPOConfig", "tunesmith.alignment.preference:dpo",
                 "direct preference optimization (sigmoid, IPO, hinge, robust, ... loss types)", "train",
                 length_key="dpo.max_length"),
    "kto": Stage("tunesmith.alignment.preference:KTOConfig", "tunesmith.alignment.preference:kto",
                 "KTO on unpaired desirable/undesirable completions", "train", length_key="kto.max_length"),
    "orpo": Stage("tunesmith.alignment.preference:ORPOConfig", "tunesmith.alignment.preference:orpo",
                  "ORPO: reference-free preference alignment", "train", length_key="orpo.max_length"),
    "simpo": Stage("tunesmith.alignment.preference:SimPOConfig", "tunesmith.alignment.preference:simpo",
                   "SimPO (through TRL's CPO): reference-free preference alignment", "train",
                   length_key="simpo.max_length"),
    "finetune": Stage("tunesmith.transfer:FinetuneConfig", "tunesmith.transfer:finetune",
                      "task fine-tuning: a classification/regression head with LoRA (or full) on any model",
                      "train", model_key="model", length_key="data.max_length"),
    "reward": Stage("tunesmith.alignment.reward:RewardConfig", "tunesmith.alignment.reward:reward",
                    "train a reward model on preference pairs", "train", length_key="reward.max_length"),
    "rlhf": Stage("tunesmith.alignment.rl:RLHFConfig", "tunesmith.alignment.rl:rlhf",
                  "online RL (GRPO or RLOO) from reward functions or reward models", "train",
                  length_key=("generation.max_prompt_length", "generation.max_new_tokens")),
    "distill": Stage("tunesmith.alignment.distill:DistillConfig", "tunesmith.alignment.distill:distill",
                     "distill a teacher's logits into a student (forward/reverse KL, JSD, on-policy)", "train",
                     length_key="distill.max_length"),
    "eval": Stage("tunesmith.eval:EvalConfig", "tunesmith.eval:run",
                  "GLUE / SuperGLUE (few-shot or fine-tune) and perplexity", "eval", api="evaluate",
                  adapter_optimizer=False),
}


def api_name(stage: str) -> str:
    """`tunesmith.<name>` of a stage's function (`eval` is `ts.evaluate`: `tunesmith.eval` is the package)."""
    return STAGES[stage].api or stage


def training_stages() -> list[str]:
    return [name for name, s in STAGES.items() if s.kind == "train"]


def get_stage(name: object, field: str = "stage", where: str = "") -> Stage:
    """The table entry, or a UserError naming the choices."""
    from .core.errors import UserError

    if not isinstance(name, str) or name not in STAGES:
        raise UserError(f'{where}unknown or missing stage type "{name}"', field=field,
                        fix=f"choose one of {', '.join(STAGES)}")
    return STAGES[name]
