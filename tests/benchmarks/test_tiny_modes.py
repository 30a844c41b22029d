"""Every benchmarks/*.py runs in the suite: `python benchmarks/X.py --tiny` (seconds, tiny data and
model) exits 0 and prints the lines its table is read by, so a renamed result key or a broken
import fails here and not on the day of the next measurement. A script without `--tiny`, or one
this file does not know yet, fails: add its `--tiny` mode and its expected lines to EXPECTED."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
GLUE = REPO.parent / "shared" / "data" / "glue"

# script -> lines (substrings) its --tiny output must contain
EXPECTED = {
    "adapters_memory.py": ["lora r16", "train peak", "planned", "wrote "],
    "corruptions.py": ["| sentences | copies | acceptable rows | corrupted rows | corrupted share |", "example: "],
    "data_pii.py": ["| type | gold | predicted | precision | recall | F1 |", "| all |", "throughput: "],
    "data_pipeline.py": ["check: 1 MB, 2000 rows in", "rows/s, peak RSS"],
    "glue_minilm.py": ["Eval throughput, SST-2 dev (64 rows)", "| sst2 | accuracy |"],
    "newest_releases.py": ["| package | locked | requirement |", "| transformers | ", "nothing resolved"],
    "pretrain_throughput.py": ["dense matmul 256^3", "nano   next_token", "nano   multi_token"],  # a dtype >5x slower is skipped
    "pretrain_vs_plain.py": ["| tunesmith |", "| plain |", "| nanogpt |", "tunesmith vs plain loop: ",
                             "fp32 on every side"],
    "serve_throughput.py": ["plain generate loop: ", "      1 ", "      4 "],
    # scripts other work owns: their table headers
    "sft_throughput.py": ["real tokens/s"],
    "dpo_throughput.py": ["real tokens/s"],
    "service_load.py": ["| jobs | workers | succeeded |"],
    "distributed_memory.py": ["| preset | parameters | mode |"],
}
# run by their own test instead (same --tiny, more assertions)
COVERED = {"gpu_check.py": "tests/benchmarks/test_gpu_check.py"}
NEEDS = {"glue_minilm.py": (GLUE, "the shared GLUE data")}
SCRIPTS = sorted(p.name for p in BENCHMARKS.glob("*.py"))


def test_every_script_is_known():
    unknown = [s for s in SCRIPTS if s not in EXPECTED and s not in COVERED]
    assert not unknown, f"add a --tiny mode and the lines it prints to EXPECTED for {unknown}"


@pytest.mark.slow
@pytest.mark.parametrize("script", SCRIPTS)
def test_tiny_mode_runs_and_prints_its_table(script):
    assert "--tiny" in (BENCHMARKS / script).read_text(), f"{script} has no --tiny mode"
    if script in COVERED:
        pytest.skip(f"its --tiny mode runs in {COVERED[script]}")
    if script in NEEDS and not NEEDS[script][0].exists():
        pytest.skip(f"needs {NEEDS[script][1]} ({NEEDS[script][0]})")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", TQDM_DISABLE="1",
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run([sys.executable, str(BENCHMARKS / script), "--tiny"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{script} --tiny exited {proc.returncode}:\n{proc.stderr[-3000:]}"
    missing = [line for line in EXPECTED.get(script, []) if line not in proc.stdout]
    assert not missing, f"{script} --tiny printed none of {missing}:\n{proc.stdout[-3000:]}"
