"""A >= 200 MB file is checked in bounded memory (rows are streamed, never loaded whole)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

MEASURE = r"""
import json, resource, sys
from tunesmith.data.validate import check_data
import datasets, transformers  # imported up front so their memory is not counted as growth
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
result = check_data(sys.argv[1])
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": result.rows, "bad": result.problem_count, "growth_mb": (after - before) / 1024,
                  "p50": result.summary()["lengths"]["p50"]}))
"""


@pytest.mark.slow
def test_large_file_is_checked_in_bounded_memory(tmp_path: Path) -> None:
    """~25 s on 2 cores: writes 210 MB of alpaca rows, checks them in a subprocess."""
    path = tmp_path / "big.jsonl"
    body = "lorem ipsum dolor sit amet " * 18
    rows = 0
    with path.open("w") as f:
        while f.tell() < 210 * 2**20:
            block = "".join(json.dumps({"instruction": f"task {rows + i}", "output": body}) + "\n" for i in range(1000))
            f.write(block)
            rows += 1000
        f.write('{"instruction": "no output"}\n')
    size_mb = path.stat().st_size / 2**20
    out = subprocess.run([sys.executable, "-c", MEASURE, str(path)], capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr[-2000:]
    stats = json.loads(out.stdout.strip().splitlines()[-1])
    assert size_mb >= 200 and stats["rows"] == rows + 1 and stats["bad"] == 1
    # the file is 210 MB; memory may grow by the length array (8 bytes a row) and buffers, not the file
    assert stats["growth_mb"] < 40, stats
