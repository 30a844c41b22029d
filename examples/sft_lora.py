"""Instruction-tune the pretrained nano model with a LoRA adapter on the embedded `add` task.

    python examples/sft_lora.py [OUT_DIR]      # after examples/pretrain_nano.py
"""
import sys

import tunesmith as ts

out = sys.argv[1] if len(sys.argv) > 1 else "runs/examples"
result = ts.sft(
    model={"path": f"{out}/pretrain/model"},
    adapter={"method": "lora", "rank": 16},
    tasks={"names": ["add"], "train_rows": 64, "eval_rows": 8},
    train={"max_steps": 30, "batch_size": 8, "lr": 2e-3, "dtype": "fp32"},
    run={"dir": f"{out}/sft", "overwrite": True},
)
# The adapter also trains the embedding rows of the chat template's <|im_start|>/<|im_end|>
# (adapter.trainable_tokens: auto), which the base never saw, so it can learn to end its turn. The
# answers start with a bare digit token ("7", not the stories' " 7"), also never seen and frozen, so
# exact match stays near 0 here (list "0".."9" in trainable_tokens to train them too);
# `tunesmith demo` uses full fine-tuning on the same task (0.0 -> 0.77).
print({k: v for k, v in result.metrics.items() if k.startswith(("before/", "after/"))})
print(f"adapter (loads with peft.PeftModel.from_pretrained): {result.model_path}")
