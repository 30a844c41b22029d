"""environment.json says how the run ran ("distributed": read from the live process state, not a
config file), the report shows it, and the shipped accelerate configs are fitted to the machine.

On CPU: 1 process records "none"; 2 processes (torchrun, or accelerate with a DDP config) record
MULTI_CPU over gloo, 2 processes, 1 node. FSDP cannot run on CPU with accelerate 1.15 (its
AcceleratorState keeps a CPU run MULTI_CPU, so the Trainer would silently train DDP): the
fsdp_full_shard config is refused there in one line, both through `tunesmith --launcher` (before
anything starts) and inside the processes of a plain `accelerate launch`.
Weights of the accelerate 2-process run vs 1 process: measured 3.0e-8 after 8 AdamW steps."""
import json
import os
import subprocess
import sys

import pytest

from distributed._pretrain import assert_close, pretrain_args, weights
from helpers import REPO, assert_user_error, launch_cli
from tunesmith.cli.launch import fit_config, launch_command
from tunesmith.core.errors import UserError

pytestmark = pytest.mark.slow


def _distributed(run):
    return json.loads((run / "environment.json").read_text())["distributed"]


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


def test_one_process_records_none(single):
    assert _distributed(single) == {"type": "none", "processes": 1, "nodes": 1, "sharding": None}
    from tunesmith.report.render import _environment
    from tunesmith.report.runinfo import read_run

    assert any("| distributed | none (1 process) |" in line for line in _environment(read_run(single)))


@pytest.mark.parametrize("launcher", ["torchrun", "accelerate"])
def test_two_processes_record_multi_cpu(corpus, single, tmp_path, launcher):
    run = tmp_path / "run"
    launch_cli(pretrain_args(corpus, run), 2, launcher=launcher)  # accelerate: the shipped ddp_cpu config
    assert _distributed(run) == {"type": "MULTI_CPU", "processes": 2, "nodes": 1, "sharding": None,
                                 "backend": "gloo"}
    assert_close(weights(run), weights(single))


def test_fsdp_config_is_refused_on_cpu_in_one_line(corpus, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "--launcher", "accelerate",
                           "--accelerate-config", "fsdp_full_shard", *pretrain_args(corpus, run)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert_user_error(proc, "fsdp_full_shard", "FSDP", "needs a GPU", "ddp_cpu")
    assert not run.exists()


def test_plain_accelerate_launch_of_fsdp_on_cpu_is_refused_by_each_process(corpus, tmp_path):
    """`accelerate launch` with an FSDP config (fitted to 2 CPU processes) bypasses tunesmith's
    launcher: each process refuses before training instead of silently running DDP."""
    import yaml

    from tunesmith.distributed import config_path

    cfg = fit_config(yaml.safe_load(config_path("fsdp_full_shard").read_text()), "x", 2, gpus=8)
    cfg.update(mixed_precision="no", use_cpu=True)
    (tmp_path / "fsdp.yaml").write_text(yaml.safe_dump(cfg))
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file",
                           str(tmp_path / "fsdp.yaml"), "-m", "tunesmith.cli", *pretrain_args(corpus, run)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0
    assert proc.stderr.count("FSDP was requested") >= 1 and "silently train MULTI_CPU" in proc.stderr
    assert not (run / "model").exists()


def test_configs_are_fitted_to_the_machine():
    import yaml

    from tunesmith.distributed import config_path

    def raw(name):
        return yaml.safe_load(config_path(name).read_text())

    cpu = fit_config(raw("ddp_gpu"), "ddp_gpu", None, gpus=0)
    assert (cpu["distributed_type"], cpu["num_processes"], cpu["use_cpu"], cpu["mixed_precision"]) == \
        ("MULTI_CPU", 2, True, "no") and "gpu_ids" not in cpu
    gpu = fit_config(raw("fsdp_full_shard"), "fsdp_full_shard", None, gpus=4)
    assert (gpu["num_processes"], gpu["mixed_precision"], gpu["use_cpu"]) == (4, "bf16", False)
    assert fit_config(raw("multinode_ddp"), "m", None, gpus=8)["num_processes"] == 16
    assert fit_config(raw("fsdp_full_shard"), "f", 3, gpus=8)["num_processes"] == 3
    for name in ("fsdp_full_shard", "deepspeed_zero3"):
        with pytest.raises(UserError, match="needs a GPU"):
            fit_config(raw(name), name, 2, gpus=0)
    with pytest.raises(UserError, match="at least 1"):
        launch_command(["--launcher", "torchrun", "--num-processes", "two", "pretrain"])


def test_distributed_record_from_the_environment(monkeypatch):
    """Before the Trainer's accelerator exists the FSDP settings come from accelerate launch's
    environment variables (the PartialState type decides whether accelerate will use FSDP)."""
    from tunesmith.core import distributed

    for k, v in {"ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": "2", "FSDP_RESHARD_AFTER_FORWARD": "false",
                 "FSDP_STATE_DICT_TYPE": "SHARDED_STATE_DICT"}.items():
        monkeypatch.setenv(k, v)
    sharding = distributed._fsdp_sharding(None)
    assert sharding == {"version": 2, "read_from": "environment", "reshard_after_forward": False,
                        "strategy": "SHARD_GRAD_OP", "state_dict_type": "SHARDED_STATE_DICT",
                        "offload_params": False}
    with pytest.raises(UserError, match="FSDP was requested"):
        distributed.check_requested_type("MULTI_CPU")
    distributed.check_requested_type("MULTI_GPU")  # accelerate turns this into FSDP
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert distributed._nodes(16) == 2
    monkeypatch.delenv("GROUP_WORLD_SIZE")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed._nodes(16) == 4
