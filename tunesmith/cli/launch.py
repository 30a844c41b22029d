"""`tunesmith --launcher torchrun|accelerate ...`: the same command on several processes."""
from __future__ import annotations

import sys

from ..core.errors import UserError

LAUNCH_FLAGS = ("--launcher", "--num-processes", "--accelerate-config")


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
    n = opts.get("--num-processes", "2")
    if opts["--launcher"] == "torchrun":
        return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={n}",
                "-m", "tunesmith.cli", *rest]
    if opts["--launcher"] == "accelerate":
        from ..distributed import config_path

        config = ["--config_file", str(config_path(opts["--accelerate-config"]))] \
            if "--accelerate-config" in opts else ["--multi_gpu"] if _has_cuda() else ["--cpu"]
        return [sys.executable, "-m", "accelerate.commands.launch", *config, "--num_processes", n,
                "-m", "tunesmith.cli", *rest]
    raise UserError(f'unknown launcher "{opts["--launcher"]}"', fix="use torchrun or accelerate")


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()
