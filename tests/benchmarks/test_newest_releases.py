"""benchmarks/newest_releases.py: the pieces that read requirements and pytest logs."""
import importlib.util
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "newest_releases.py"
_spec = importlib.util.spec_from_file_location("newest_releases", SCRIPT)
newest = sys.modules["newest_releases"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(newest)


def test_pins_read_every_exact_pin_of_the_lock():
    pins = newest.pins((SCRIPT.parents[1] / "requirements.lock").read_text())
    assert pins["torch"].startswith("2.13.0") and "transformers" in pins and "huggingface-hub" in pins


def test_requirements_beyond_bounds_drop_only_the_upper_bounds():
    capped, free = newest.requirements(False), newest.requirements(True)
    assert any("<=" in r for r in capped) and not any("<" in r for r in free)
    assert any(r.startswith("transformers>=") for r in free)


def test_summary_of_quiet_and_verbose_pytest_logs():
    assert newest.summarize("....\n503 passed, 1 skipped, 229 warnings in 787.04s (0:13:07)\n") == \
        ("503 passed, 1 skipped, 229 warnings", [])
    log = "FAILED tests/a.py::t - boom\n===== 1 failed, 2 passed in 3.0s ====="
    assert newest.summarize(log) == ("1 failed, 2 passed", ["tests/a.py::t"])
