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
an FSDP config launched on CPU would silently train plain DDP; `main_process_first` installs
`compat.fsdp_on_cpu`, which finishes the upgrade for a multi-process CPU run, before any
accelerator exists. After training, `consolidate` makes an FSDP2 model whole on every process
(the stages then save it as usual). The process group is created here, with the stated
collective timeout (`DIST_TIMEOUT_S`, TUNESMITH_DIST_TIMEOUT).
"""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

from .errors import UserError

# the PartialState types that accelerate 1.15 turns into FSDP when ACCELERATE_USE_FSDP is set, and
# MULTI_CPU, which tunesmith turns into FSDP (compat.fsdp_on_cpu)
_ACCELERATOR_TYPES = ("MULTI_GPU", "MULTI_XPU", "MULTI_NPU", "MULTI_MLU", "MULTI_SDAA", "MULTI_MUSA",
                      "MULTI_HPU", "MULTI_NEURON")
_FSDP_TYPES = _ACCELERATOR_TYPES + ("MULTI_CPU",)


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


# How long a collective (gloo/NCCL all-reduce, barrier, rendezvous of the process group) waits for
# a process that stopped answering before it fails: torch's own default for gloo, stated and set
# explicitly; TUNESMITH_DIST_TIMEOUT (seconds) overrides it. A process that dies closes its
# connections, and the others fail at their next collective at once ("Connection reset by peer");
# the timeout bounds only a peer that hangs without closing them (a frozen node, a cut network).
DIST_TIMEOUT_S = 1800


def timeout_s() -> int:
    value = os.environ.get("TUNESMITH_DIST_TIMEOUT", "").strip()
    if not value:
        return DIST_TIMEOUT_S
    if not value.isdigit() or int(value) < 1:
        raise UserError(f'TUNESMITH_DIST_TIMEOUT must be a whole number of seconds, not "{value}"')
    return int(value)


def _partial_state():
    """accelerate's PartialState; the first call (tunesmith's, before any Trainer) initializes the
    process group, with the stated timeout."""
    from datetime import timedelta

    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available(), timeout=timedelta(seconds=timeout_s()))


def check_requested_type(state_type: str) -> None:
    """Refuse a run whose launcher asked for DeepSpeed that accelerate will not give here (it would
    fall back to DDP without a word). FSDP on CPU is given (see `compat.fsdp_on_cpu`)."""
    want = requested_type()
    if want == "FSDP" and state_type not in _FSDP_TYPES + ("FSDP",):
        raise UserError(f"FSDP was requested (ACCELERATE_USE_FSDP) but this run is {state_type}: accelerate "
                        f"would silently train without sharding", fix="launch it with several processes")
    if want == "DEEPSPEED" and state_type in ("MULTI_CPU", "NO"):
        raise UserError("DeepSpeed was requested (ACCELERATE_USE_DEEPSPEED) but this run is on CPU",
                        fix="use --accelerate-config fsdp_full_shard or ddp_cpu on CPU")


def is_sharded_checkpoint(ckpt: Path) -> bool:
    """An FSDP checkpoint (transformers' `pytorch_model_fsdp*`: torch.distributed.checkpoint
    folders of model and optimizer shards), as opposed to whole-model safetensors."""
    return any(p.name.startswith("pytorch_model_fsdp") for p in ckpt.iterdir())


def check_resume(ckpt: Path | None) -> None:
    """Refuse to resume an FSDP checkpoint without FSDP, or a whole-model checkpoint under FSDP
    (transformers 5.24 would fail deep inside train()). FSDP to FSDP works across process counts
    (torch.distributed.checkpoint reshards), as does DDP/1 process to DDP/1 process."""
    if ckpt is None:
        return
    fsdp = requested_type() == "FSDP" and world_size() > 1
    sharded = is_sharded_checkpoint(ckpt)
    if sharded and not fsdp:
        raise UserError(f"{ckpt.name} holds FSDP shards; it resumes only under FSDP",
                        file=ckpt, fix="resume with --launcher accelerate --accelerate-config fsdp_full_shard "
                                       "--num-processes N (N >= 2, any count)")
    if fsdp and not sharded:
        raise UserError(f"{ckpt.name} holds a whole model (saved without FSDP); it does not resume under FSDP",
                        file=ckpt, fix="resume it as it was trained (ddp_cpu, torchrun or one process)")


def check_stage(config, checkpoints: Path | None = None) -> None:
    """Refuse, before training, what this launch cannot run: resuming a checkpoint of the other
    kind (`check_resume`); a quantized base (QLoRA) under FSDP without CUDA (bitsandbytes' 4-bit
    weights are sharded only as CUDA bf16 storage, `bnb_4bit_quant_storage: bfloat16`)."""
    try:
        _check_stage(config, checkpoints)
    except UserError:
        wait_for_everyone()  # every process refuses here: the main one removes a new run folder only
        raise                # once the others have finished loading (they write nothing after it)


def _check_stage(config, checkpoints: Path | None) -> None:
    run_cfg = getattr(config, "run", None)
    if checkpoints is not None and getattr(run_cfg, "resume", False):
        from .checkpoints import last_checkpoint

        check_resume(last_checkpoint(checkpoints))
    if world_size() <= 1 or requested_type() != "FSDP":
        return
    adapter = getattr(config, "adapter", None)
    if getattr(adapter, "method", "full") == "full" or not hasattr(adapter, "resolved_quantize"):
        return
    import torch

    if adapter.resolved_quantize() != "none" and not torch.cuda.is_available():
        raise UserError(f"{adapter.method} (a {adapter.resolved_quantize()} base) under FSDP needs CUDA GPUs; "
                        "this machine has none", field="adapter.method",
                        fix="use --adapter.method lora under FSDP on CPU, or ddp_cpu for QLoRA")


@contextlib.contextmanager
def main_process_first() -> Iterator[None]:
    """A no-op in a single process; otherwise accelerate's main-process-first barrier. An FSDP
    launch on CPU gets accelerate's FSDP state (`compat.fsdp_on_cpu`) before any accelerator is
    built."""
    if world_size() == 1:
        yield
        return
    state = _partial_state()
    check_requested_type(state.distributed_type.value)
    if requested_type() == "FSDP":
        from ..compat import fsdp2_evaluate_unsharded, fsdp2_sees_tied_tokens, fsdp_on_cpu

        fsdp2_sees_tied_tokens()
        fsdp2_evaluate_unsharded()
        if state.distributed_type.value == "MULTI_CPU":
            fsdp_on_cpu()
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
        if requested_type() == "FSDP" and kind in _FSDP_TYPES:
            kind = "FSDP"
        elif requested_type() == "DEEPSPEED" and kind not in ("MULTI_CPU", "NO"):
            kind = "DEEPSPEED"
    from ..compat import process_group_timeout

    record = {"type": kind, "processes": int(state.num_processes), "nodes": _nodes(world),
              "sharding": None, "backend": getattr(state, "backend", None), "timeout_s": process_group_timeout()}
    if kind == "FSDP":
        record["sharding"] = _fsdp_sharding(fsdp_plugin)
    elif kind == "DEEPSPEED":
        record["sharding"] = _deepspeed_sharding(deepspeed_plugin)
    want = requested_type()
    if want and want != kind:
        record["requested"] = want  # asked for through the launcher's environment, not given
    return record


def consolidate(model) -> bool:
    """After training under FSDP2: the model whole again on every process, in place (collective;
    see `compat.unshard_fsdp2`), so a stage's save writes a normal consolidated save_pretrained
    folder (or PEFT adapter) and generation/evaluation after training run on the whole model.
    A no-op (False) for a model that was not sharded."""
    if world_size() <= 1:
        return False
    from ..compat import unshard_fsdp2

    return unshard_fsdp2(model)


def wait_for_everyone() -> None:
    """A barrier across the processes of a distributed run (nothing in a single process)."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        dist.barrier()
