"""Ready accelerate configs for DDP (CPU/GPU), FSDP, DeepSpeed ZeRO-2/3 and multi-node runs."""
from importlib import resources
from pathlib import Path

CONFIGS = ("ddp_cpu", "ddp_gpu", "fsdp_full_shard", "deepspeed_zero2", "deepspeed_zero3", "multinode_ddp")


def config_path(name: str) -> Path:
    """The shipped accelerate config `name` (see CONFIGS), or `name` itself if it is a file."""
    if Path(name).is_file():
        return Path(name)
    if name not in CONFIGS:
        from ..core.errors import UserError
        raise UserError(f'unknown accelerate config "{name}"', fix=f"choose one of {', '.join(CONFIGS)} or give a file")
    return Path(str(resources.files("tunesmith.distributed") / "configs" / f"{name}.yaml"))
