"""tunesmith: build, fine-tune, align and evaluate language models on the Hugging Face stack.

    import tunesmith as ts
    result = ts.pretrain(train={"max_steps": 50})
"""
from __future__ import annotations

__version__ = "0.1.0"

from .compat import quiet_library_noise as _quiet_library_noise
from .core.errors import UserError
from .stages import STAGES as _STAGES, api_name as _api_name, load as _load

_quiet_library_noise()

# public names besides each stage's function and config class (those come from the stage table);
# everything loads on first use, so `import tunesmith` and the CLI's --help stay fast
_EXTRA_API = {
    "PretrainResult": "tunesmith.pretraining.stage:PretrainResult",
    "run": "tunesmith.pipeline:run_pipeline",
    "PipelineConfig": "tunesmith.pipeline:PipelineConfig",
    "merge": "tunesmith.adapters.merge:merge",
    "plan": "tunesmith.adapters.planner:plan",
    "push": "tunesmith.hub:push",
    "PushConfig": "tunesmith.hub:PushConfig",
    "write_report": "tunesmith.report:write_report",
    "check_data": "tunesmith.data:check_data",
    "prepare_data": "tunesmith.data:prepare",
    "DataPrepConfig": "tunesmith.data:DataPrepConfig",
}


def _api() -> dict[str, str]:
    """public name -> "module:attribute": `ts.<stage>` and `ts.<Config>` for every stage, then the rest."""
    api = {}
    for name, stage in _STAGES.items():
        api[_api_name(name)] = stage.function
        api[stage.config_name] = stage.config
    return {**api, **_EXTRA_API}


def __getattr__(name: str):
    ref = _api().get(name)
    if ref is None:
        raise AttributeError(f"module 'tunesmith' has no attribute {name!r}")
    return _load(ref)


__all__ = ["__version__", "UserError", *_api()]
