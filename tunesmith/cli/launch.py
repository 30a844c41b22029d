"""`tunesmith --launcher torchrun|accelerate ...`: the same command on several processes.

With `--accelerate-config NAME` the shipped config (or a file) is fitted to this machine before
accelerate reads it: a resolved copy is written to a temporary folder and launched instead.
- num_processes: `--num-processes` if given (the total, as accelerate counts it), else one per
  GPU (torch.cuda.device_count()) on each of the config's machines, else 2 on a machine without
  a GPU (the least that is distributed: on CPU more processes mostly compete for the same cores);
- without a GPU: `use_cpu: true`, `mixed_precision: "no"`, MULTI_GPU becomes MULTI_CPU (gloo) and
  gpu_ids goes. FSDP configs run on CPU (FSDP2 over gloo: accelerate 1.15 would keep the run
  MULTI_CPU, tunesmith upgrades it, see compat.fsdp_on_cpu) with fsdp_cpu_ram_efficient_loading
  off (it fails on a PEFT model with tied embeddings). DeepSpeed configs are refused without a GPU,
  before anything starts. `--cpu` is not passed to accelerate on purpose:
  it would send the launch to accelerate's single-process simple launcher.
- a MULTI_CPU config with more than one process is launched with `--multi_gpu` added: accelerate
  1.15 sends MULTI_CPU to its simple launcher, which starts ONE process unless mpirun is set up
  (`accelerate launch --config_file ddp_cpu.yaml --num_processes 2` trains in a single process);
  `--multi_gpu` selects its torchrun-based launcher, which serves CPU as well (the processes find
  no GPU and use gloo, as environment.json's "distributed" record shows).
Without --accelerate-config: `--multi_gpu` with a GPU, the shipped ddp_cpu config without.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

from ..core.errors import UserError

LAUNCH_FLAGS = ("--launcher", "--num-processes", "--accelerate-config")
CPU_PROCESSES = 2  # default number of processes on a machine without a GPU


def launch_command(argv: list[str]) -> list[str] | None:
    """`tunesmith --launcher accelerate --num-processes 2 pretrain ...` -> the command that runs
    the same tunesmith command under the launcher (None without --launcher)."""
    opts, rest, i = {}, [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag in LAUNCH_FLAGS:
            if not eq:
                if i + 1 >= len(argv):
                    raise UserError(f"{flag} needs a value")
                value, i = argv[i + 1], i + 1
            opts[flag] = value
        else:
            rest.append(argv[i])
        i += 1
    if "--launcher" not in opts:
        return None
    asked = _num_processes(opts.get("--num-processes"))
    if opts["--launcher"] == "torchrun":
        n = asked or _per_machine()
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                "-m", "tunesmith.cli", *rest]
    if opts["--launcher"] == "accelerate":
        name = opts.get("--accelerate-config") or (None if _has_cuda() else "ddp_cpu")
        if name is None:
            n, config = asked or _per_machine(), ["--multi_gpu"]
        else:
            path, n, kind = resolved_config(name, asked)
            config = ["--config_file", str(path)]
            if kind == "MULTI_CPU" and n > 1:
                config.append("--multi_gpu")  # accelerate's torchrun-based launcher (see the docstring)
        return [sys.executable, "-m", "accelerate.commands.launch", *config, "--num_processes", str(n),
                "-m", "tunesmith.cli", *rest]
    raise UserError(f'unknown launcher "{opts["--launcher"]}"', fix="use torchrun or accelerate")


def _num_processes(value: str | None) -> int | None:
    if value is None:
        return None
    if not value.strip().isdigit() or int(value) < 1:
        raise UserError(f'--num-processes must be a whole number of at least 1, not "{value}"')
    return int(value)


def _per_machine() -> int:
    """Processes on this machine: one per GPU, else CPU_PROCESSES."""
    if _has_cuda():
        import torch

        return torch.cuda.device_count()
    return CPU_PROCESSES


def fit_config(raw: dict, name: str, processes: int | None, gpus: int) -> dict:
    """The accelerate config `raw` fitted to a machine with `gpus` GPUs (0: CPU only) and the
    asked number of processes (None: from the machine)."""
    cfg = dict(raw)
    kind = str(cfg.get("distributed_type", "NO")).upper()
    machines = int(cfg.get("num_machines") or 1)
    if not gpus:
        if kind == "DEEPSPEED":
            raise UserError(f'accelerate config "{name}" uses DeepSpeed, which needs a GPU and this machine has '
                            "none (DeepSpeed's CPU accelerator is not supported by tunesmith)",
                            fix="use --accelerate-config fsdp_full_shard (sharded) or ddp_cpu on CPU")
        if kind.startswith("MULTI_"):
            cfg["distributed_type"] = "MULTI_CPU"
        cfg["use_cpu"] = True
        cfg["mixed_precision"] = "no"
        cfg.pop("gpu_ids", None)
        if kind == "FSDP" and isinstance(cfg.get("fsdp_config"), dict):
            # accelerate 1.15's RAM-efficient loading moves a PEFT model to `meta` and re-ties it
            # through the PeftModel, which fails on tied embeddings; on CPU every process loads anyway
            cfg["fsdp_config"] = {**cfg["fsdp_config"], "fsdp_cpu_ram_efficient_loading": False}
    cfg["num_processes"] = processes or (gpus or CPU_PROCESSES) * machines
    if cfg["num_processes"] % machines:
        raise UserError(f"--num-processes {cfg['num_processes']} does not split over the config's "
                        f"{machines} machines", fix=f"give a multiple of {machines}")
    return cfg


def resolved_config(name: str, processes: int | None) -> tuple[Path, int, str]:
    """The shipped config `name` (or a file) fitted to this machine, written to a temporary file
    named like the original (content-addressed: the same fit reuses the same file); and the
    number of processes it launches and its distributed_type."""
    import yaml

    from ..distributed import config_path

    source = config_path(name)
    try:
        raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as e:
        raise UserError(f"cannot read accelerate config: {e}".splitlines()[0], file=source) from None
    if not isinstance(raw, dict):
        raise UserError("accelerate config is not a mapping", file=source)
    cfg = fit_config(raw, name, processes, _gpu_count())
    text = (f"# {source} fitted to this machine by tunesmith (num_processes, use_cpu, mixed_precision)\n"
            + yaml.safe_dump(cfg, sort_keys=False))
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / f"tunesmith-accelerate-{os.getuid() if hasattr(os, 'getuid') else 0}" / digest
    path = folder / source.name
    if not path.is_file() or path.read_text(encoding="utf-8") != text:
        from ..core.rundir import atomic_write_text

        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        atomic_write_text(path, text)
    return path, cfg["num_processes"], str(cfg.get("distributed_type", "NO")).upper()


def _gpu_count() -> int:
    if not _has_cuda():
        return 0
    import torch

    return torch.cuda.device_count()


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
