"""Each workaround in tunesmith.compat: it still does its job, and a test fails when the library
changes under it (then the workaround is revisited, not silently kept)."""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from transformers import AutoModelForCausalLM

from tunesmith import compat
from tunesmith.adapters import AdapterConfig, apply, load_base, merge
from tunesmith.adapters.apply import peft_config
from tunesmith.adapters.artifacts import save_adapter

from adapters.conftest import cls_batch, lm_batch, nano, tiny_bert, train

warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*")


@pytest.fixture
def nano_folder(tmp_path):
    nano("llama").save_pretrained(tmp_path / "base")
    return tmp_path / "base"


def logits(model, batch):
    model.eval()
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


# --- prefix tuning on encoders -----------------------------------------------------------------

def test_peft_still_refuses_an_encoder_whose_forward_names_cache():
    """When this fails, peft (or transformers) handles the `cache` rename itself: drop
    compat.prefix_tuning_backbone and its call in adapters/apply.py."""
    cfg = AdapterConfig(method="prefix_tuning", task="seq_cls")
    model = tiny_bert()
    peft_model = get_peft_model(model, peft_config(model, cfg))
    with pytest.raises(ValueError, match="past key values"):
        peft_model(**cls_batch())


def test_prefix_tuning_reaches_the_encoder_and_changes_its_output():
    cfg = AdapterConfig(method="prefix_tuning", task="seq_cls")
    model = apply(tiny_bert(), cfg)
    batch = cls_batch()
    before = logits(model, batch)
    with torch.no_grad():  # a different prefix must change the output: the cache is really used
        model.prompt_encoder["default"].embedding.weight.mul_(3.0)
    assert (logits(model, batch) - before).abs().max() > 1e-3
    assert compat.prefix_tuning_backbone(model) is False  # already wrapped: nothing more to do


# --- bitsandbytes' CPU packed 4-bit path -------------------------------------------------------

def test_bitsandbytes_still_decides_packing_per_layer():
    """compat.set_bnb_cpu_packing steers Linear4bit.forward through this attribute; when this
    fails, bitsandbytes changed how it picks the packed CPU path: revisit the workaround."""
    from bitsandbytes.nn import Linear4bit
    assert compat.BNB_PACKING_FLAG in inspect.getsource(Linear4bit.forward)
    assert compat.BNB_PACKING_FLAG in inspect.getsource(Linear4bit.__init__)


def test_load_base_keeps_every_cpu_on_the_portable_path(nano_folder):
    """On every CPU kind (AVX2, AVX512-BF16, AMX): no 4-bit layer may take the packed path, so an
    eval pass leaves the weights in the layout that training and merging expect."""
    cfg = AdapterConfig(method="qlora", rank=4)
    model = apply(load_base(nano_folder, cfg), cfg)
    from bitsandbytes.nn import Linear4bit
    layers = [m for m in model.modules() if isinstance(m, Linear4bit)]
    assert layers and not any(getattr(m, compat.BNB_PACKING_FLAG) for m in layers)
    logits(model, lm_batch())
    assert not any(compat.bnb_is_packed(m) for m in layers)


def _train_eval_merge(folder: Path, out: Path, packed: bool):
    """QLoRA: 4 steps, an eval pass (packs the weights where the path is on), saved and merged."""
    cfg = AdapterConfig(method="qlora", rank=8)
    torch.manual_seed(0)
    model = apply(load_base(folder, cfg), cfg)
    compat.set_bnb_cpu_packing(model, packed)
    train(model, cfg, lm_batch(), steps=4)
    evaluated = logits(model, lm_batch(seed=1))
    n_packed = sum(compat.bnb_is_packed(m) for m in model.modules())
    save_adapter(model, out / "adapter", cfg, base=folder)
    merged = AutoModelForCausalLM.from_pretrained(merge(out / "adapter", out / "merged"))
    return evaluated, logits(merged, lm_batch(seed=1)), n_packed


@pytest.mark.skipif(not compat.bnb_packs_on_this_cpu(),
                    reason="bitsandbytes' packed 4-bit kernel needs an AVX512-BF16 CPU")
def test_qlora_train_eval_merge_agree_with_packed_path_on_and_off(nano_folder, tmp_path):
    """Forced off (tunesmith's default) and forced on (bitsandbytes' default on AVX512-BF16 and
    AMX CPUs), train -> eval -> merge give the same logits within bf16 rounding: measured in this
    test's flow on an AVX512-BF16 EPYC (nano llama, logits up to ~1.06): on vs off eval 3.1e-3,
    merged vs eval 3e-7 (off) and 3.1e-3 (on), merged on vs off 0.0 (the merge reloads the base
    and never packs)."""
    off_eval, off_merged, off_packed = _train_eval_merge(nano_folder, tmp_path / "off", False)
    on_eval, on_merged, on_packed = _train_eval_merge(nano_folder, tmp_path / "on", True)
    assert off_packed == 0 and on_packed > 0  # the packed path really ran
    torch.testing.assert_close(off_merged, off_eval, rtol=0, atol=1e-4)
    assert (on_eval - off_eval).abs().max() < 1.5e-2      # measured 3.1e-3: bf16 absmax and matmul
    torch.testing.assert_close(on_merged, off_merged, rtol=0, atol=1e-4)


# --- TRL / transformers / accelerate internals ------------------------------------------------

def test_trl_fused_head_loss_still_reads_the_head_bias():
    """When this fails, TRL no longer reads `lm_head.bias` in its fused loss: drop expose_head_bias."""
    from trl.trainer import utils as trl_utils
    assert ".bias" in inspect.getsource(trl_utils), "TRL's fused LM-head path changed"


def test_peft_token_wrapper_still_hides_the_bias_and_the_workaround_exposes_it():
    model = apply(nano("llama", tie_embeddings=False), AdapterConfig(method="lora", rank=4), token_ids=[5, 6])
    head = model.get_base_model().lm_head
    assert type(head).__name__ == "TrainableTokensWrapper"
    assert "bias" in head.__dict__ and head.bias is None  # exposed by apply()
    del head.__dict__["bias"]
    with pytest.raises(AttributeError):
        head.bias  # noqa: B018  peft still does not forward it
    compat.expose_head_bias(model)
    assert head.bias is None


def test_accelerate_and_trainer_internals_the_workarounds_touch_still_exist():
    """unprepare_after_evaluate, load_checkpoint_weights and CustomSampler reach these; when one
    fails, the library moved it: revisit the workaround (tests/distributed and the resume tests
    prove the behaviour)."""
    from accelerate import Accelerator
    from transformers import Trainer
    assert isinstance(Accelerator(cpu=True)._models, list)
    assert "resume_from_checkpoint" in inspect.signature(Trainer._load_from_checkpoint).parameters
    assert "_get_train_sampler" in inspect.getsource(Trainer.get_train_dataloader)


def test_dpo_loss_types_are_the_ones_trl_accepts():
    import re

    import trl
    help_text = trl.DPOConfig.__dataclass_fields__["loss_type"].metadata["help"]
    assert set(re.findall(r"`'(\w+)'`", help_text)) == set(compat.DPO_LOSS_TYPES)


@pytest.mark.parametrize("name", list(compat.TRL_EXPERIMENTAL))
def test_trl_experimental_components_still_live_there(name):
    """When this fails, TRL moved the component (out of experimental?): update TRL_EXPERIMENTAL."""
    assert all(isinstance(cls, type) for cls in compat.trl_experimental(name))


def test_trl_trainers_still_cast_quantized_trainable_weights_to_bf16():
    """keep_adapter_dtype undoes this cast; when this fails TRL stopped casting: drop it."""
    from trl.trainer import reward_trainer, sft_trainer
    for module in (sft_trainer, reward_trainer):
        assert "param.data = param.data.to(torch.bfloat16)" in inspect.getsource(module), module.__name__


def test_bitsandbytes_kernels_warning_is_dropped_and_still_exists():
    """When the second assert fails, bitsandbytes no longer warns this way: drop the filter."""
    import logging
    import subprocess
    import sys

    from bitsandbytes.backends.cpu import ops
    assert compat.BNB_KERNELS_MESSAGE in inspect.getsource(ops)
    out = subprocess.run([sys.executable, "-c", "import tunesmith.adapters"], capture_output=True, text=True)
    assert compat.BNB_KERNELS_MESSAGE not in out.stdout + out.stderr
    logger = logging.getLogger(compat.BNB_KERNELS_LOGGER)
    record = logger.makeRecord(logger.name, logging.WARNING, "f", 1, compat.BNB_KERNELS_MESSAGE + " x", (), None)
    assert not logger.filter(record)  # the filter is what drops it (not the absence of the warning here)


def test_trainer_still_counts_tokens_per_micro_batch_through_the_hook_count_real_tokens_replaces():
    from transformers import Trainer
    assert "self._track_num_input_tokens(inputs)" in inspect.getsource(Trainer._run_epoch)
    assert "main_input_name" in inspect.getsource(Trainer._track_num_input_tokens)


def test_real_tokens_of_each_batch_layout_the_stages_feed():
    import torch

    from tunesmith.compat import _real_tokens
    mask = torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]])
    assert _real_tokens({"input_ids": torch.zeros(2, 4), "attention_mask": mask}) == 5  # padded (DPO, reward)
    assert _real_tokens({"input_ids": torch.zeros(1, 7), "position_ids": torch.zeros(1, 7)}) == 7  # padding-free
    # ORPO/CPO/KTO: chosen/completion sequences hold the prompt; prompt masks are not counted again
    assert _real_tokens({"prompt_attention_mask": mask, "chosen_attention_mask": mask,
                         "rejected_attention_mask": mask[:1]}) == 8
    assert _real_tokens({"prompt_attention_mask": mask}) == 5
    assert _real_tokens([{"prompt": "x"}]) == 0  # GRPO/RLOO rows: TRL counts them itself


HEAP_SCRIPT = """
import sys
import torch
from tunesmith import compat
kept = compat.keep_freed_heap() if sys.argv[1] == "keep" else None
def rss_mib():
    return int(open("/proc/self/statm").read().split()[1]) * 4096 / 2 ** 20
blocks = [torch.empty(2 * 2 ** 20).fill_(1.0) for _ in range(8)]  # 8 x 8 MiB, as a step's activations
held = rss_mib()
del blocks
print(kept, held - rss_mib())
"""


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="needs Linux /proc")
def test_glibc_still_gives_freed_blocks_back_and_keep_freed_heap_keeps_them(tmp_path):
    """glibc 2.36 unmaps a freed 8 MiB block (over its 128 KiB starting mmap threshold): the next step
    faults in new pages. After `keep_freed_heap` the blocks stay in the heap for reuse. A glibc that
    keeps them by itself fails the first assertion (the workaround is then revisited); where the
    user set malloc's tunables or preloads another allocator, tunesmith leaves the allocator alone."""
    import os
    import subprocess
    import sys

    script = tmp_path / "heap.py"
    script.write_text(HEAP_SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_") and k not in ("LD_PRELOAD", "GLIBC_TUNABLES")}

    def run(mode: str, **extra) -> tuple[str, float]:
        out = subprocess.run([sys.executable, str(script), mode], capture_output=True, text=True, check=True,
                             env={**env, **extra}).stdout.split()
        return " ".join(out[:-1]), float(out[-1])

    kept, given_back = run("default")
    assert given_back > 48, f"glibc kept {64 - given_back:.0f} of 64 MiB freed: is keep_freed_heap still needed?"
    kept, given_back = run("keep")
    assert kept == "{'mmap_threshold': 33554432, 'trim_threshold': 2147483647}" and given_back < 8
    kept, given_back = run("keep", MALLOC_TRIM_THRESHOLD_="131072")
    assert "left" in kept and given_back > 48
