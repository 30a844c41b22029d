"""The shipped accelerate configs parse and are accepted by accelerate (DeepSpeed/GPU ones cannot
run here; CPU DDP runs in test_ddp_pretrain.py, FSDP on CPU in test_fsdp.py, multinode_ddp over
loopback in test_multinode.py)."""
import pytest
import yaml
from accelerate.commands.config.config_args import ClusterConfig
from accelerate.utils import DistributedType

from tunesmith.cli import _launch_command
from tunesmith.core.errors import UserError
from tunesmith.distributed import CONFIGS, config_path


@pytest.mark.parametrize("name", CONFIGS)
def test_config_is_accepted_by_accelerate(name):
    cfg = ClusterConfig.from_yaml_file(str(config_path(name)))  # raises on unknown keys
    raw = yaml.safe_load(config_path(name).read_text())
    assert cfg.distributed_type == DistributedType(raw["distributed_type"])
    assert cfg.num_processes >= 2 and cfg.num_processes % cfg.num_machines == 0
    if cfg.distributed_type == DistributedType.DEEPSPEED:
        assert cfg.deepspeed_config["zero_stage"] in (2, 3)
    if cfg.distributed_type == DistributedType.FSDP:
        from accelerate.utils import FullyShardedDataParallelPlugin
        opts = {k.removeprefix("fsdp_"): v for k, v in cfg.fsdp_config.items()}
        plugin = FullyShardedDataParallelPlugin(
            fsdp_version=opts["version"], reshard_after_forward=opts["reshard_after_forward"],
            auto_wrap_policy=opts["auto_wrap_policy"].lower(),
            state_dict_type=opts["state_dict_type"], cpu_ram_efficient_loading=opts["cpu_ram_efficient_loading"])
        assert plugin.fsdp_version == 2


def test_launch_commands(monkeypatch):
    import tunesmith.cli.launch as launch

    monkeypatch.setattr(launch, "_has_cuda", lambda: False)
    monkeypatch.setattr(launch, "_gpu_count", lambda: 0)
    with pytest.raises(UserError, match="needs a GPU"):   # DeepSpeed's CPU accelerator is not supported
        _launch_command(["--launcher", "accelerate", "--accelerate-config", "deepspeed_zero2", "pretrain"])
    cmd = _launch_command(["--launcher", "accelerate", "--accelerate-config", "fsdp_full_shard", "pretrain"])
    assert cmd[cmd.index("--num_processes") + 1] == "2" and "--multi_gpu" not in cmd  # FSDP: its own launcher
    monkeypatch.setattr(launch, "_has_cuda", lambda: True)   # the command a GPU machine gets
    monkeypatch.setattr(launch, "_gpu_count", lambda: 8)
    cmd = _launch_command(["--launcher", "accelerate", "--accelerate-config", "fsdp_full_shard",
                           "--num-processes", "4", "sft", "r.yaml", "--train.lr", "1e-4"])
    assert cmd[1:4] == ["-m", "accelerate.commands.launch", "--config_file"]
    assert cmd[4].endswith("fsdp_full_shard.yaml") and cmd[-4:] == ["sft", "r.yaml", "--train.lr", "1e-4"]
    cmd = _launch_command(["--launcher=torchrun", "--num-processes=2", "pretrain"])
    assert "--nproc_per_node=2" in cmd and cmd[-1] == "pretrain"
    assert _launch_command(["pretrain"]) is None
    with pytest.raises(UserError, match="unknown accelerate config"):
        _launch_command(["--launcher", "accelerate", "--accelerate-config", "zero9", "pretrain"])


def test_bad_input_under_a_launcher_is_one_line_and_exit_2(corpus, tmp_path):
    """Every launched process stops on the same bad input: the command prints the one line once
    (after torchrun's report of the failed processes) and exits 2, as without a launcher."""
    import os
    import subprocess
    import sys

    from distributed._pretrain import pretrain_args
    from helpers import REPO

    run = tmp_path / "run"
    args = pretrain_args(corpus, run, extra=["--train.batch_size", "3"])  # 3 rows do not split over 2 processes
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "--launcher", "torchrun", "--num-processes", "2",
                           *args], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "train.batch_size" in errors[0], proc.stderr[-2000:]
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0] and not run.exists()
