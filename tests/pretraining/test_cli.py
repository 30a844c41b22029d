"""The pretrain command as a user types it: help, dry run, and bad input (exit 2, one line)."""
import pytest
import yaml

from helpers import assert_user_error, run_cli, run_cli_here, tiny_config, write_corpus


def test_help_lists_every_config_key():
    proc = run_cli("pretrain", "--help")
    assert proc.returncode == 0
    for flag in ("--model.family", "--train.lr", "--objective.n_heads", "--curriculum.pacing", "--data.streaming"):
        assert flag in proc.stdout
    assert run_cli("--version").stdout.startswith("tunesmith ")


def test_dry_run_prints_resolved_config(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: {family: neox}\n")
    proc = run_cli("pretrain", str(recipe), "--train.max_steps", "7", "--dry-run")
    assert proc.returncode == 0, proc.stderr
    cfg = yaml.safe_load(proc.stdout)
    assert cfg["model"]["family"] == "neox" and cfg["train"]["max_steps"] == 7
    assert not (tmp_path / "run").exists()


def _bad_inputs(tmp_path):
    empty = tmp_path / "empty.txt"
    empty.write_text("\n \n\n")
    latin = tmp_path / "latin1.txt"
    latin.write_bytes("first line\ncaf\xe9 au lait\n".encode("latin-1"))
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"text": "ok"}\n{"txt": "wrong field"}\n')
    return {
        "missing corpus": (["--data.train", str(tmp_path / "nope.txt")], ["nope.txt", "no such file"]),
        "empty corpus": (["--data.train", str(empty)], ["empty.txt", "empty"]),
        "non-UTF-8 file": (["--data.train", str(latin)], ["latin1.txt:2:", "not UTF-8"]),
        "unknown key": (["--train.lerning_rate", "1"], ['"train.lerning_rate"', 'did you mean']),
        "jsonl field": (["--data.train", str(jsonl)], ["bad.jsonl:2:", 'field "text" is missing']),
        "block > context": (["--data.block_size", "4096"], ["block_size", "context"]),
    }


@pytest.mark.parametrize("case", ["missing corpus", "empty corpus", "non-UTF-8 file", "unknown key",
                                  "jsonl field", "block > context"])
def test_bad_input_exits_2_with_one_line(tmp_path, case, capsys):
    """In this process (the imports cost ~8 s a call); the first case also as a real command."""
    args, fragments = _bad_inputs(tmp_path)[case]
    argv = ("pretrain", "--run.dir", str(tmp_path / "run"), "--tokenizer.vocab_size", "300", *args)
    assert_user_error(run_cli_here(capsys, *argv), *fragments)
    if case == "missing corpus":
        assert_user_error(run_cli(*argv), *fragments)
    assert not (tmp_path / "run").exists()  # nothing half-written


def test_existing_run_dir_is_not_clobbered(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "keep.txt").write_text("precious")
    proc = run_cli_here(capsys, "pretrain", "--run.dir", str(run))
    assert_user_error(proc, "already exists", "--resume")
    assert [p.name for p in run.iterdir()] == ["keep.txt"]


def test_json_output_is_one_json_document(tmp_path):
    """`--json` prints the result and nothing else on stdout: no Trainer log dicts (they go to
    metrics.jsonl, the progress bar to stderr)."""
    import json
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(tmp_path, write_corpus(tmp_path / "c.txt"))))
    proc = run_cli("pretrain", str(recipe), "--json", env={"TRANSFORMERS_VERBOSITY": "warning"})  # as a user has it
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout)["model_path"].endswith("model")
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged if "loss" in r] == [5, 10]
