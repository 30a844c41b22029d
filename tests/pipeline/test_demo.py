"""`tunesmith demo` runs the starter pipeline (its end-to-end run is checked in test_init.py,
on the same recipe shrunk to a few steps)."""
import tunesmith.demo as demo


def test_demo_overrides_apply_to_the_pipeline():
    assert demo.demo_pipeline(["--run.dir", "elsewhere"])["run"]["dir"] == "elsewhere"
    stages = [s["stage"] for s in demo.demo_pipeline()["stages"]]
    assert stages == ["pretrain", "sft", "dpo"]
    assert [name for name, *_ in demo.MEASURES] == ["base", "sft", "dpo", "dpo"]
