"""Parameter-efficient fine-tuning: the `adapter:` block, applying it (PEFT, bitsandbytes),
saving/merging adapters, several adapters on one base, the memory planner (the task
fine-tuning stage is `tunesmith.transfer`).

from tunesmith.adapters import AdapterConfig, apply, load_base
model = apply(load_base("runs/base/model", cfg := AdapterConfig(method="qlora")), cfg)
"""
from .apply import apply, peft_config, trainable_summary
from .artifacts import load_adapter, save_adapter
from .config import AdapterConfig
from .merge import merge, merged_for_inference
from .multi import combine, load_many, stack, switch
from .optim import build_optimizer
from .planner import MemoryPlan, fitting, parse_size, plan
from .quantize import load_base
from .targets import find_linear_targets
from .tokens import trainable_token_ids

__all__ = ["AdapterConfig", "MemoryPlan", "apply",
           "build_optimizer", "combine", "find_linear_targets", "fitting",
           "load_adapter", "load_base", "load_many", "merge", "merged_for_inference", "parse_size", "peft_config", "plan",
           "save_adapter", "stack", "switch", "trainable_summary", "trainable_token_ids"]
