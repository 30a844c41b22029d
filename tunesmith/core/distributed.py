"""Several processes (torchrun / accelerate launch): the main process goes first through
set-up (validating input, training the tokenizer, writing the run directory); the others
follow and reuse what it wrote.

`how_it_runs()` is what environment.json records under "distributed": read from the live
process state, never from an accelerate config file. Where it looks, in order:

- world size: env WORLD_SIZE (torchrun and accelerate launch set it; 1 when absent);
- nodes: env GROUP_WORLD_SIZE (torchrun's number of worker groups, one per node), else
  WORLD_SIZE // LOCAL_WORLD_SIZE;
- type: the Trainer's accelerator when one exists (`AcceleratorState().distributed_type`, its
  fsdp_plugin / deepspeed_plugin); before that (environment.json is written before the Trainer
  is built) accelerate's PartialState (`distributed_type`, `backend`), upgraded the way
  accelerate 1.15's AcceleratorState will upgrade it: to FSDP when env ACCELERATE_USE_FSDP is
  true and the PartialState type is a multi-accelerator one (MULTI_GPU, MULTI_XPU, ...), to
  DEEPSPEED when env ACCELERATE_USE_DEEPSPEED is true and the process is not on CPU. FSDP's
  settings then come from FSDP_VERSION, FSDP_RESHARD_AFTER_FORWARD, FSDP_SHARDING_STRATEGY,
  FSDP_STATE_DICT_TYPE, FSDP_OFFLOAD_PARAMS; DeepSpeed's stage from
  ACCELERATE_DEEPSPEED_ZERO_STAGE (all set by `accelerate launch`). "read_from" says which.

accelerate 1.15 never upgrades MULTI_CPU to FSDP (accelerate/state.py, AcceleratorState.__init__:
the ACCELERATE_USE_FSDP branch is only reached for MULTI_GPU/XPU/NPU/MLU/SDAA/MUSA/HPU/NEURON), so
an FSDP config launched on CPU silently trains plain DDP; `main_process_first` refuses that.
"""
from __future__ import annotations

import contextlib
import os
from typing import Any, Iterator

from .errors import UserError

# the PartialState types that accelerate 1.15 turns into FSDP when ACCELERATE_USE_FSDP is set
_ACCELERATOR_TYPES = ("MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA", "MULTI_MUSA",
                      "MULTI_HPU", "MULTI_NEURON")


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def _env_true(name: str) -> bool:
    return os.environ.get(name, "false").strip().lower() in ("1", "true", "yes")


def requested_type() -> str | None:
    """What `accelerate launch` asked for through the environment: "FSDP", "DEEPSPEED" or None."""
    if _env_true("ACCELERATE_USE_FSDP"):
        return "FSDP"
    if _env_true("ACCELERATE_USE_DEEPSPEED"):
        return "DEEPSPEED"
    return None


def _partial_state():
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def check_requested_type(state_type: str) -> None:
    """Refuse a run whose launcher asked for FSDP/DeepSpeed that accelerate will not give here
    (it would fall back to DDP without a word)."""
    want = requested_type()
    if want == "FSDP" and state_type not in _ACCELERATOR_TYPES + ("FSDP",):
        raise UserError(f"FSDP was requested (ACCELERATE_USE_FSDP) but accelerate runs it only on GPUs; "
                        f"here it would silently train {state_type} (DDP) instead",
                        fix="use --accelerate-config ddp_cpu or --launcher torchrun on CPU")
    if want == "DEEPSPEED" and state_type in ("MULTI_CPU", "NO"):
        raise UserError("DeepSpeed was requested (ACCELERATE_USE_DEEPSPEED) but this run is on CPU",
                        fix="use --accelerate-config ddp_cpu or --launcher torchrun on CPU")


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """A no-op in a single process; otherwise accelerate's main-process-first barrier."""
    if world_size() == 1:
        yield
        return
    state = _partial_state()
    check_requested_type(state.distributed_type.value)
    with state.main_process_first():
        yield


def _nodes(world: int) -> int:
    group = os.environ.get("GROUP_WORLD_SIZE")
    if group and group.isdigit() and int(group) > 0:
        return int(group)
    local = int(os.environ.get("LOCAL_WORLD_SIZE") or world)
    return max(1, world // max(1, local))


def _fsdp_sharding(plugin: Any | None) -> dict:
    if plugin is not None:
        version = int(plugin.fsdp_version)
        reshard = plugin.reshard_after_forward
        out = {"version": version, "read_from": "accelerator"}
        if version == 2:
            out["reshard_after_forward"] = bool(reshard)
            out["strategy"] = "FULL_SHARD" if reshard else "SHARD_GRAD_OP"
        else:
            out["strategy"] = getattr(reshard, "name", str(reshard))
        out["state_dict_type"] = getattr(plugin.state_dict_type, "name", str(plugin.state_dict_type))
        out["offload_params"] = bool(getattr(plugin.cpu_offload, "offload_params", False))
        return out
    version = int(os.environ.get("FSDP_VERSION", "1"))
    out = {"version": version, "read_from": "environment"}
    if version == 2:
        reshard = _env_true("FSDP_RESHARD_AFTER_FORWARD") if "FSDP_RESHARD_AFTER_FORWARD" in os.environ else True
        out["reshard_after_forward"] = reshard
        out["strategy"] = "FULL_SHARD" if reshard else "SHARD_GRAD_OP"
    else:
        out["strategy"] = os.environ.get("FSDP_RESHARD_AFTER_FORWARD") or os.environ.get(
            "FSDP_SHARDING_STRATEGY", "FULL_SHARD")
    out["state_dict_type"] = os.environ.get("FSDP_STATE_DICT_TYPE", "SHARDED_STATE_DICT")
    out["offload_params"] = _env_true("FSDP_OFFLOAD_PARAMS")
    return out


def _deepspeed_sharding(plugin: Any | None) -> dict:
    if plugin is not None:
        return {"zero_stage": int(plugin.zero_stage), "read_from": "accelerator"}
    stage = os.environ.get("ACCELERATE_DEEPSPEED_ZERO_STAGE")
    return {"zero_stage": int(stage) if stage and stage.isdigit() else None, "read_from": "environment"}


def how_it_runs() -> dict:
    """{"type", "processes", "nodes", "sharding"} of this process, from live state (see the module
    docstring). One process: {"type": "none", "processes": 1, "nodes": 1, "sharding": None}."""
    import torch.distributed as dist

    world = dist.get_world_size() if dist.is_available() and dist.is_initialized() else world_size()
    if world <= 1:
        return {"type": "none", "processes": 1, "nodes": 1, "sharding": None}
    from accelerate.state import AcceleratorState, is_initialized

    fsdp_plugin = deepspeed_plugin = None
    if is_initialized():  # the Trainer's accelerator exists: its state is final
        state = AcceleratorState()
        kind = state.distributed_type.value
        fsdp_plugin = getattr(state, "fsdp_plugin", None)
        deepspeed_plugin = getattr(state, "deepspeed_plugin", None)
    else:
        state = _partial_state()
        kind = state.distributed_type.value
        if requested_type() == "FSDP" and kind in _ACCELERATOR_TYPES:
            kind = "FSDP"
        elif requested_type() == "DEEPSPEED" and kind not in ("MULTI_CPU", "NO"):
            kind = "DEEPSPEED"
    record = {"type": kind, "processes": int(state.num_processes), "nodes": _nodes(world),
              "sharding": None, "backend": getattr(state, "backend", None)}
    if kind == "FSDP":
        record["sharding"] = _fsdp_sharding(fsdp_plugin)
    elif kind == "DEEPSPEED":
        record["sharding"] = _deepspeed_sharding(deepspeed_plugin)
    want = requested_type()
    if want and want != kind:
        record["requested"] = want  # asked for through the launcher's environment, not given
    return record
