"""Data check and prepare throughput, and peak memory while checking a large file.
Usage: python benchmarks/data_pipeline.py [MB]   (default 210)
       python benchmarks/data_pipeline.py --tiny   (a 1 MB file, and `prepare` on the first 50 HH-RLHF rows, dedup on)"""
from __future__ import annotations

import json
import resource
import sys
import tempfile
import time
from pathlib import Path

from tunesmith.data.prepare import prepare
from tunesmith.data.validate import check_data


def main(mb: int = 210, tiny: bool = False) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.jsonl"
        body = "lorem ipsum dolor sit amet " * 18
        rows = 0
        with path.open("w") as f:
            while f.tell() < mb * 2**20:
                f.write("".join(json.dumps({"instruction": f"task {rows + i}", "output": body}) + "\n" for i in range(1000)))
                rows += 1000
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        t = time.perf_counter()
        result = check_data(str(path))
        dt = time.perf_counter() - t
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"check: {path.stat().st_size / 2**20:.0f} MB, {result.rows} rows in {dt:.1f} s = {result.rows / dt:.0f} rows/s, "
              f"peak RSS {before:.0f} -> {after:.0f} MB (growth {after - before:.0f} MB = "
              f"{(after - before) / (path.stat().st_size / 2**20):.3f} x file size)")
        hh = Path(__file__).resolve().parents[2] / "shared" / "data" / "corpora" / "hh_harmless_base_test.jsonl.gz"
        if hh.exists():
            source = hh
            if tiny:  # the first 50 rows
                import gzip

                source = Path(tmp) / "hh_head.jsonl"
                with gzip.open(hh, "rt", encoding="utf-8") as f:
                    source.write_text("".join(line for _, line in zip(range(50), f)), encoding="utf-8")
            for dedup in (True,) if tiny else (False, True):
                t = time.perf_counter()
                r = prepare(inputs=[{"path": str(source)}], on_bad_rows="skip",
                            dedup={"exact": dedup, "near": dedup}, pii={"enabled": True})
                dt = time.perf_counter() - t
                print(f"prepare HH-RLHF ({r.card['steps']['rows_read']} rows, PII on, dedup {'on' if dedup else 'off'}): "
                      f"{dt:.1f} s = {r.card['steps']['rows_read'] / dt:.0f} rows/s; PII replaced "
                      f"{r.card['steps']['pii_replaced']}; duplicates {r.card['steps']['duplicates_removed']}")


if __name__ == "__main__":
    if "--tiny" in sys.argv[1:]:
        main(1, tiny=True)
    else:
        main(int(sys.argv[1]) if len(sys.argv) > 1 else 210)
