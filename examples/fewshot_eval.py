"""Zero-shot SuperGLUE scoring of the pretrained nano model by verbalizer log-likelihood.

    python examples/fewshot_eval.py [OUT_DIR] [SUPERGLUE_DIR]   # after examples/pretrain_nano.py
"""
import sys

import tunesmith as ts
from tunesmith.eval import markdown_table

out = sys.argv[1] if len(sys.argv) > 1 else "runs/examples"
data = sys.argv[2] if len(sys.argv) > 2 else "../shared/data/superglue"
result = ts.evaluate(
    protocol="fewshot",
    model={"path": f"{out}/pretrain/model"},
    data={"benchmark": "superglue", "tasks": "cb,copa", "dir": data, "eval_limit": 16},
    fewshot={"k": 0},
    run={"dir": f"{out}/eval", "overwrite": True},
)
print(markdown_table(result))
