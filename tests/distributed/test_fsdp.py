"""FSDP2 on 2 CPU processes (gloo) through accelerate: `tunesmith --launcher accelerate
--accelerate-config fsdp_full_shard ...` shards for real on a machine without a GPU.

Same final weights as 1 process with the same global batch (train.batch_size 8: 4 + 4 rows per
step) and seed. Tolerances, as for DDP: pretraining 1e-6 on every weight (measured 3.2e-8 after 8
AdamW steps, both on 2 and on 4 processes after a resume); SFT 1e-4 on every trained weight
(measured after 4 steps at lr 1e-2: 9.5e-6 LoRA adapter, 1.2e-5 full fine-tuning; Adam amplifies
summation-order noise where a gradient is near zero, see test_ddp_alignment.py). FSDP's reduce-
scatter averages gradients as DDP's all-reduce does, so a missing reduction (each process training
on its half) would be ~7e-2 away.

What is checked besides weights: environment.json says FSDP with the sharding read from the
Trainer's accelerator; checkpoints are FSDP shards (torch.distributed.checkpoint folders written by
both processes) carrying the completion marker; resuming them continues to the same weights,
also on another process count (4, resharded by torch.distributed.checkpoint), and is refused in
one line without FSDP; run/model is a consolidated save_pretrained folder (or PEFT adapter) that
stock transformers/peft load; QLoRA under FSDP is refused on CPU in one line (the check every
process runs before training, called here in-process); the compat workarounds still match the
libraries they work around. The 1-process SFT runs are the session's (conftest.sft_single), shared
with test_ddp_alignment.py.
"""
import json
import os
import subprocess
import sys

import pytest
import yaml
from safetensors.torch import load_file

from distributed._pretrain import assert_close, launch, pretrain_args, sft_args, weights
from helpers import REPO, assert_user_error

pytestmark = pytest.mark.slow
FSDP = "fsdp_full_shard"
SFT_TOL = 1e-4


def _distributed(run):
    return json.loads((run / "environment.json").read_text())["distributed"]


@pytest.fixture(scope="module")
def fsdp_run(corpus, tmp_path_factory):
    """8 pretraining steps by plain `accelerate launch` of the shipped FSDP config as tunesmith
    fits it to this machine (2 CPU processes); its stdout."""
    from tunesmith.cli.launch import resolved_config

    run = tmp_path_factory.mktemp("fsdp") / "run"
    fitted, n, kind = resolved_config(FSDP, 2)
    assert (n, kind) == (2, "FSDP")
    cfg = yaml.safe_load(fitted.read_text())
    assert (cfg["use_cpu"], cfg["mixed_precision"]) == (True, "no")
    proc = subprocess.run([sys.executable, "-m", "accelerate.commands.launch", "--config_file", str(fitted),
                           "-m", "tunesmith.cli", *pretrain_args(corpus, run)],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run, proc.stdout


def _env():
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}


def test_pretrain_fsdp_matches_one_process(fsdp_run, single):
    run, stdout = fsdp_run
    assert_close(weights(run), weights(single))
    assert stdout.count("run: ") == 1
    assert _distributed(run) == {
        "type": "FSDP", "processes": 2, "nodes": 1, "backend": "gloo", "timeout_s": 1800.0,
        "sharding": {"version": 2, "read_from": "accelerator", "reshard_after_forward": True,
                     "strategy": "FULL_SHARD", "state_dict_type": "SHARDED_STATE_DICT", "offload_params": False}}
    assert "| distributed | FSDP, 2 processes on 1 node, gloo; sharding: version 2, read from accelerator" in \
        (run / "report.md").read_text()
    for step in (4, 8):
        ckpt = run / "checkpoints" / f"checkpoint-{step}"
        assert (ckpt / "CHECKPOINT_COMPLETE").is_file()
        assert (ckpt / "pytorch_model_fsdp_0" / ".metadata").is_file() and (ckpt / "optimizer_0").is_dir()
        assert {p.name for p in ckpt.glob("rng_state_*.pth")} == {"rng_state_0.pth", "rng_state_1.pth"}
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(run / "model")  # consolidated: stock transformers loads it
    assert sum(p.numel() for p in model.parameters()) == json.loads((run / "results.json").read_text())[
        "metrics"]["parameters"]


def test_sharded_resume_across_process_counts(fsdp_run, corpus, single, tmp_path):
    """The FSDP run cut back to its step-4 checkpoint, resumed with --resume on 4 processes through
    tunesmith: the weights of 8 uninterrupted steps on 1 process. Resuming the FSDP checkpoint in
    one process is refused in one line."""
    import shutil

    run = tmp_path / "run"
    shutil.copytree(fsdp_run[0], run)
    shutil.rmtree(run / "checkpoints" / "checkpoint-8")
    shutil.rmtree(run / "model")
    refused = subprocess.run([sys.executable, "-m", "tunesmith.cli", *pretrain_args(corpus, run, 8, ["--resume"])],
                             cwd=REPO, env=_env(), capture_output=True, text=True, timeout=300)
    assert_user_error(refused, "checkpoint-4", "FSDP shards", "fsdp_full_shard")
    launch(pretrain_args(corpus, run, 8, ["--resume"]), 4, FSDP)
    assert_close(weights(run), weights(single))
    assert _distributed(run)["processes"] == 4


@pytest.mark.parametrize("method", ["lora", "full"])
def test_sft_fsdp_matches_one_process(sft_base, sft_single, tmp_path, method):
    one, two = sft_single(method), tmp_path / "two"
    launch(sft_args(sft_base, two, method), 2, FSDP)
    name = "adapter_model" if method == "lora" else "model"
    a, b = (load_file(r / "model" / f"{name}.safetensors") for r in (one, two))
    assert a.keys() == b.keys() and a
    assert max((a[k] - b[k]).abs().max().item() for k in a) <= SFT_TOL
    assert _distributed(two)["type"] == "FSDP"
    if method == "lora":  # the adapter (with its trained chat-template token rows) loads in stock peft
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(sft_base), two / "model")
        assert any("trainable_tokens" in n for n, _ in peft_model.named_parameters())
    else:
        from transformers import AutoModelForCausalLM

        AutoModelForCausalLM.from_pretrained(two / "model")


def test_qlora_under_fsdp_is_refused_on_cpu(monkeypatch, tmp_path):
    """Checked by every process before training (RunDir.start -> distributed.check_stage); here
    with the environment an FSDP launch gives each process."""
    import torch

    from tunesmith.alignment.sft import SFTConfig
    from tunesmith.core.distributed import check_stage
    from tunesmith.core.errors import UserError

    if torch.cuda.is_available():
        pytest.skip("QLoRA under FSDP is allowed with CUDA")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    cfg = SFTConfig.model_validate({"model": {"path": str(tmp_path)}, "adapter": {"method": "qlora"}})
    with pytest.raises(UserError, match="qlora .*under FSDP needs CUDA GPUs") as e:
        check_stage(cfg)
    assert "adapter.method" in str(e.value) and "\n" not in str(e.value)
    check_stage(SFTConfig.model_validate({"model": {"path": str(tmp_path)}, "adapter": {"method": "lora"}}))
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "false")  # DDP: QLoRA trains on CPU processes
    check_stage(cfg)


# --- the compat workarounds still match the libraries (each fails when its library changes) ------

def test_accelerate_still_keeps_cpu_runs_out_of_fsdp():
    """accelerate 1.15 turns only GPU-like types into FSDP (compat.fsdp_on_cpu); when MULTI_CPU
    joins that list the workaround can go."""
    import inspect

    from accelerate.state import AcceleratorState

    from tunesmith import compat

    compat.fsdp_on_cpu()
    source = inspect.getsource(AcceleratorState.__init__.__wrapped__)
    branch = source[source.index("elif self.distributed_type in ["):source.index('"ACCELERATE_USE_FSDP"')]
    assert "MULTI_GPU" in branch and "MULTI_CPU" not in branch
    assert compat.fsdp_on_cpu()  # idempotent


def test_evaluate_before_train_under_fsdp2_still_prepares_the_model_alone():
    """transformers evaluates an unprepared FSDP model through `accelerator.prepare(model)`, which
    accelerate refuses under FSDP2 (compat.fsdp2_evaluate_unsharded; exercised end to end by the
    initial evaluation of test_pretrain_fsdp_matches_one_process)."""
    import inspect

    from accelerate import Accelerator
    from transformers import Trainer

    loop = inspect.getsource(Trainer.evaluation_loop)
    assert "self.accelerator.prepare(model)" in loop and "self.is_fsdp_enabled" in loop
    assert "a model and optimizer must be passed together" in inspect.getsource(Accelerator.prepare)


def test_peft_token_wrapper_still_hides_the_tie():
    """peft's TrainableTokensWrapper computes `weight` afresh on each access (so accelerate's
    `input_weight is output_weight` misses a tie: compat.fsdp2_sees_tied_tokens)."""
    import inspect

    import torch
    from accelerate.utils import fsdp_utils
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaConfig, LlamaForCausalLM

    assert "input_weight is output_weight" in inspect.getsource(fsdp_utils.fsdp2_prepare_model)
    cfg = LlamaConfig(vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
    torch.manual_seed(0)
    model = get_peft_model(LlamaForCausalLM(cfg), LoraConfig(r=2, target_modules=["q_proj"],
                                                             trainable_token_indices={"embed_tokens": [3]}))
    inp, out = model.get_input_embeddings(), model.get_output_embeddings()
    assert inp.weight is not inp.weight and inp.weight is not out.weight
    assert inp.token_adapter.base_layer.weight is out.token_adapter.base_layer.weight


def test_unshard_fsdp2_gives_back_a_plain_module(monkeypatch):
    """A 1-process gloo group: fully_shard a tied tiny Llama, train a step, undo it; the module is
    its own class again with plain tied parameters, and state_dict/forward/generate work unsharded."""
    import socket

    import torch
    import torch.distributed as dist
    from torch.distributed.fsdp import FSDPModule, fully_shard, register_fsdp_forward_method
    from torch.distributed.tensor import DTensor
    from transformers import LlamaConfig, LlamaForCausalLM

    from tunesmith.compat import unshard_fsdp2

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=0, world_size=1)
    try:
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=32, hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                          num_attention_heads=2, num_key_value_heads=1, tie_word_embeddings=True)
        model = LlamaForCausalLM(cfg)
        for layer in model.model.layers:
            fully_shard(layer)
        fully_shard(model)
        register_fsdp_forward_method(model, "generate")
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
        x = torch.randint(0, 32, (2, 8))
        model(input_ids=x, labels=x).loss.backward()
        opt.step()
        assert isinstance(model.lm_head.weight, DTensor)
        want = {k: v.full_tensor() for k, v in model.state_dict().items()}
        assert unshard_fsdp2(model)
        assert not any(isinstance(m, FSDPModule) for m in model.modules()) and type(model) is LlamaForCausalLM
        assert not any(isinstance(p, DTensor) for p in model.parameters())
        assert model.lm_head.weight is model.model.embed_tokens.weight
        sd = model.state_dict()
        assert all(torch.equal(sd[k], want[k]) for k in want)
        model.generate(x[:1, :3], max_new_tokens=2, do_sample=False)
        assert not unshard_fsdp2(model)
    finally:
        dist.destroy_process_group()
