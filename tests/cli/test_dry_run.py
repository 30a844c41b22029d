"""`--dry-run` prints the resolved config, the data check and the memory plan, as one valid YAML
document (check and plan as comments), and trains nothing."""
import yaml

from helpers import run_cli


def test_dry_run_checks_the_data_and_fails_on_bad_rows(tmp_path):
    from tunesmith.pretraining.presets import build_model

    build_model("llama", "nano").save_pretrained(tmp_path / "m")
    good, bad = tmp_path / "good.jsonl", tmp_path / "bad.jsonl"
    good.write_text('{"instruction": "hi", "output": "hello"}\n')
    bad.write_text('{"instruction": "hi", "output": "hello"}\n{"instruction": "no answer"}\n')
    common = ["--model.path", str(tmp_path / "m"), "--run.dir", str(tmp_path / "run"), "--dry-run"]
    ok = run_cli("sft", "--data.inputs", f"[{{path: {good}}}]", *common)
    assert ok.returncode == 0, ok.stderr
    assert yaml.safe_load(ok.stdout)["data"]["inputs"][0]["path"] == str(good)
    assert "# data check:" in ok.stdout and "good: 1  bad: 0" in ok.stdout and "# predicted peak memory" in ok.stdout
    failed = run_cli("sft", "--data.inputs", f"[{{path: {bad}}}]", *common)
    assert failed.returncode == 2
    assert f'{bad}:2: field "output" is missing' in failed.stdout
    assert not (tmp_path / "run").exists()
