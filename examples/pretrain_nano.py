"""Pretrain a nano Llama-style model on the corpus shipped with tunesmith (~20 s on a CPU).

    python examples/pretrain_nano.py [OUT_DIR]      # default runs/examples
"""
import sys

import tunesmith as ts

out = sys.argv[1] if len(sys.argv) > 1 else "runs/examples"
result = ts.pretrain(
    model={"family": "llama", "size": "nano"},
    train={"max_steps": 100, "dtype": "fp32"},
    run={"dir": f"{out}/pretrain", "overwrite": True},
)
print(f"validation loss {result.metrics['initial_eval_loss']:.2f} -> {result.metrics['eval_loss']:.2f}")
print(f"sample: {result.sample!r}")
print(f"model: {result.model_path}")
