"""Validate, clean, deduplicate and anonymize an instruction file, then write train/validation.

    python examples/data_prepare.py [OUT_DIR]
"""
import json
import sys
from pathlib import Path

import tunesmith as ts

out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/examples")
out.mkdir(parents=True, exist_ok=True)
rows = [{"instruction": f"Say hello to user {i}.", "output": f"Hello {i}! Write to me at user{i}@example.com."}
        for i in range(40)]
rows += rows[:5]                                    # exact duplicates, removed by prepare
(out / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

check = ts.check_data(str(out / "raw.jsonl"))
print(check.render())
result = ts.prepare_data(inputs=[{"path": str(out / "raw.jsonl")}], split={"validation": 0.1}, pii={"enabled": True},
                         output={"dir": str(out / "prepared"), "overwrite": True})
print(result.render())
print(result.dataset["train"][0])
