"""tunesmith: build, fine-tune, align and evaluate language models on the Hugging Face stack.

    import tunesmith as ts
    result = ts.pretrain(train={"max_steps": 50})
"""
from __future__ import annotations

import importlib

__version__ = "0.1.0"

from .core.errors import UserError

# public name -> module that defines it; modules load on first use, so `import tunesmith`
# and the CLI's --help stay fast
_API = {
    "pretrain": "tunesmith.pretraining.stage:pretrain",
    "PretrainResult": "tunesmith.pretraining.stage:PretrainResult",
    "PretrainConfig": "tunesmith.pretraining.config:PretrainConfig",
    "sft": "tunesmith.alignment.sft:sft",
    "SFTConfig": "tunesmith.alignment.sft:SFTConfig",
    "dpo": "tunesmith.alignment.preference:dpo",
    "DPOConfig": "tunesmith.alignment.preference:DPOConfig",
    "kto": "tunesmith.alignment.preference:kto",
    "KTOConfig": "tunesmith.alignment.preference:KTOConfig",
    "orpo": "tunesmith.alignment.preference:orpo",
    "ORPOConfig": "tunesmith.alignment.preference:ORPOConfig",
    "simpo": "tunesmith.alignment.preference:simpo",
    "SimPOConfig": "tunesmith.alignment.preference:SimPOConfig",
    "reward": "tunesmith.alignment.reward:reward",
    "RewardConfig": "tunesmith.alignment.reward:RewardConfig",
    "rlhf": "tunesmith.alignment.rl:rlhf",
    "RLHFConfig": "tunesmith.alignment.rl:RLHFConfig",
    "distill": "tunesmith.alignment.distill:distill",
    "DistillConfig": "tunesmith.alignment.distill:DistillConfig",
    "finetune": "tunesmith.adapters.finetune:finetune",
    "FinetuneConfig": "tunesmith.adapters.finetune:FinetuneConfig",
    "run": "tunesmith.pipeline:run_pipeline",
    "PipelineConfig": "tunesmith.pipeline:PipelineConfig",
    "merge": "tunesmith.adapters.merge:merge",
    "plan": "tunesmith.adapters.planner:plan",
    "evaluate": "tunesmith.eval:run",
    "EvalConfig": "tunesmith.eval:EvalConfig",
    "push": "tunesmith.hub:push",
    "PushConfig": "tunesmith.hub:PushConfig",
    "write_report": "tunesmith.report:write_report",
    "check_data": "tunesmith.data:check_data",
    "prepare_data": "tunesmith.data:prepare",
    "DataPrepConfig": "tunesmith.data:DataPrepConfig",
}


def __getattr__(name: str):
    if name in _API:
        module, attr = _API[name].split(":")
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")


__all__ = ["__version__", "UserError", *_API]
