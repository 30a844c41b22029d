"""Preference-align the pretrained nano model with DPO on embedded `brackets`/`upper` pairs.

    python examples/dpo.py [OUT_DIR]      # after examples/pretrain_nano.py
"""
import sys

import tunesmith as ts

out = sys.argv[1] if len(sys.argv) > 1 else "runs/examples"
result = ts.dpo(
    model={"path": f"{out}/pretrain/model"},
    adapter={"method": "full"},
    tasks={"names": ["brackets", "upper"], "train_rows": 64, "eval_rows": 16},
    dpo={"beta": 0.1, "loss_type": "sigmoid", "max_length": 64},
    train={"max_steps": 20, "batch_size": 8, "lr": 1e-3, "dtype": "fp32"},
    run={"dir": f"{out}/dpo", "overwrite": True},
)
m = result.metrics
print(f"held-out pair accuracy {m['before/pair_accuracy']:.2f} -> {m['after/pair_accuracy']:.2f}")
