"""environment.json says how the run ran ("distributed": read from the live process state, not a
config file), the report shows it, and the shipped accelerate configs are fitted to the machine.

On CPU: 1 process records "none"; 2 processes (torchrun, or accelerate with a DDP config) record
MULTI_CPU over gloo, 2 processes, 1 node (FSDP on CPU: test_fsdp.py). DeepSpeed configs are
refused on CPU in one line before anything starts.
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
                                 "backend": "gloo", "timeout_s": 1800.0}
    assert_close(weights(run), weights(single))


def test_deepspeed_config_is_refused_on_cpu_in_one_line(corpus, tmp_path):
    run = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "tunesmith.cli", "--launcher", "accelerate",
                           "--accelerate-config", "deepspeed_zero3", *pretrain_args(corpus, run)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert_user_error(proc, "deepspeed_zero3", "DeepSpeed", "needs a GPU", "fsdp_full_shard")
    assert not run.exists()


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
    fsdp = fit_config(raw("fsdp_full_shard"), "fsdp_full_shard", None, gpus=0)  # FSDP2 over gloo (test_fsdp.py)
    assert (fsdp["distributed_type"], fsdp["num_processes"], fsdp["use_cpu"], fsdp["mixed_precision"]) == \
        ("FSDP", 2, True, "no") and fsdp["fsdp_config"]["fsdp_cpu_ram_efficient_loading"] is False
    with pytest.raises(UserError, match="needs a GPU"):
        fit_config(raw("deepspeed_zero3"), "deepspeed_zero3", 2, gpus=0)
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
        distributed.check_requested_type("NO")
    distributed.check_requested_type("MULTI_GPU")  # accelerate turns this into FSDP
    distributed.check_requested_type("MULTI_CPU")  # and tunesmith this (compat.fsdp_on_cpu)
    monkeypatch.setenv("GROUP_WORLD_SIZE", "2")
    assert distributed._nodes(16) == 2
    monkeypatch.delenv("GROUP_WORLD_SIZE")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert distributed._nodes(16) == 4
