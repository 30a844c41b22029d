"""A table of bad inputs across config, data, model folders, paths and the CLI: each gives
exit code 2, one line naming what is wrong, and leaves the output folder untouched.
Runs `tunesmith.cli.main` in-process (the subprocess path is covered in tests/pretraining/test_cli.py)."""
import json

import pytest

from tunesmith.cli import main


def _tree(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size) for p in root.rglob("*"))


@pytest.fixture
def ws(tmp_path):
    """A workspace with one good tiny corpus and a set of broken inputs."""
    (tmp_path / "good.txt").write_text("\n\n".join(f"Tom had {i} apples. He ate one." for i in range(30)))
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "latin1.txt").write_bytes("ok\ncaf\xe9\n".encode("latin-1"))
    (tmp_path / "nofield.jsonl").write_text('{"text": "a"}\n{"body": "b"}\n')
    (tmp_path / "badjson.jsonl").write_text('{"text": "a"}\n{"text": "b"\n')
    (tmp_path / "notstr.jsonl").write_text('{"text": 5}\n')
    (tmp_path / "doc.docx").write_bytes(b"PK")
    (tmp_path / "nofiles").mkdir()
    (tmp_path / "nofiles" / "x.bin").write_bytes(b"1")
    (tmp_path / "obj.json").write_text('{"rows": 1}')
    (tmp_path / "latin.json").write_bytes('[{"text": "a"},\n{"text": "caf\xe9"}]'.encode("latin-1"))
    (tmp_path / "noconfig").mkdir()
    (tmp_path / "noconfig" / "model.safetensors").write_bytes(b"x")
    (tmp_path / "pickle").mkdir()
    (tmp_path / "pickle" / "config.json").write_text("{}")
    (tmp_path / "pickle" / "pytorch_model.bin").write_bytes(b"x")
    (tmp_path / "noweights").mkdir()
    (tmp_path / "noweights" / "config.json").write_text("{}")
    (tmp_path / "emptytok").mkdir()
    (tmp_path / "bad.yaml").write_text("train:\n  lr: [1,\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "latin.yaml").write_bytes("model: {family: caf\xe9}".encode("latin-1"))
    (tmp_path / "existing").mkdir()
    (tmp_path / "existing" / "keep.txt").write_text("precious")
    (tmp_path / "pref.jsonl").write_text(json.dumps({"prompt": "p", "chosen": "c"}) + "\n")
    import datasets
    datasets.Dataset.from_dict({"body": ["x"]}).to_parquet(str(tmp_path / "nocol.parquet"))
    return tmp_path


P = ["pretrain", "--data.train", "{ws}/good.txt", "--tokenizer.vocab_size", "300", "--run.dir", "{ws}/run"]
CASES = {
    # config
    "unknown section": (P + ["--trian.lr", "1"], ['"trian"', 'did you mean "train"']),
    "unknown key": (P + ["--train.lrr", "1"], ['"train.lrr"', 'did you mean "lr"']),
    "wrong type": (P + ["--train.max_steps", "many"], ['"train.max_steps"', "integer"]),
    "negative lr": (P + ["--train.lr", "-1"], ['"train.lr"', "greater than 0"]),
    "bad choice": (P + ["--model.family", "bert"], ['"model.family"', "llama"]),
    "flag without value": (P + ["--train.max_steps"], ["--train.max_steps", "no value"]),
    "recipe missing": (["pretrain", "{ws}/nope.yaml"], ["nope.yaml", "recipe file not found"]),
    "recipe bad YAML": (["pretrain", "{ws}/bad.yaml"], ["bad.yaml:", "invalid YAML"]),
    "recipe not a mapping": (["pretrain", "{ws}/list.yaml"], ["list.yaml", "mapping"]),
    "recipe not UTF-8": (["pretrain", "{ws}/latin.yaml"], ["latin.yaml", "not UTF-8"]),
    "batch vs micro batch": (P + ["--train.batch_size", "10", "--train.micro_batch_size", "4"],
                             ["batch_size", "not a multiple"]),
    "hidden vs heads": (P + ["--model.hidden", "65"], ["hidden size 65", "not divisible"]),
    "heads vs kv heads": (P + ["--model.kv_heads", "3"], ["kv_heads 3"]),
    "block over context": (P + ["--data.block_size", "4096"], ["block_size", "context"]),
    "too few mtp heads": (P + ["--objective.n_heads", "1"], ['"objective.n_heads"']),
    "perplexity without reference": (P + ["--curriculum.enabled", "true", "--curriculum.score", "perplexity"],
                                     ["curriculum.reference_model"]),
    "curriculum and streaming": (P + ["--curriculum.enabled", "true", "--data.streaming", "true"],
                                 ["curriculum", "streaming"]),
    "vocab below tokenizer": (P + ["--model.vocab", "100"], ["model.vocab", "smaller than the tokenizer"]),
    "zero steps": (P + ["--train.max_steps", "0"], ['"train.max_steps"', "greater than or equal to 1"]),
    # data
    "missing corpus": (P + ["--data.train", "{ws}/nope.txt"], ["nope.txt", "no such file"]),
    "empty corpus": (P + ["--data.train", "{ws}/empty.txt"], ["empty.txt", "empty"]),
    "non-UTF-8 corpus": (P + ["--data.train", "{ws}/latin1.txt"], ["latin1.txt:2:", "not UTF-8"]),
    "jsonl missing field": (P + ["--data.train", "{ws}/nofield.jsonl"], ["nofield.jsonl:2:", '"text" is missing']),
    "jsonl bad json": (P + ["--data.train", "{ws}/badjson.jsonl"], ["badjson.jsonl:2:", "not valid JSON"]),
    "jsonl text not string": (P + ["--data.train", "{ws}/notstr.jsonl"], ["notstr.jsonl:1:", "must be a string"]),
    "unsupported file": (P + ["--data.train", "{ws}/doc.docx"], ["doc.docx", "unsupported file type"]),
    "folder without text": (P + ["--data.train", "{ws}/nofiles"], ["nofiles", "holds no"]),
    "json without the field": (P + ["--data.train", "{ws}/obj.json"], ["obj.json:1:", '"text" is missing']),
    "parquet without column": (P + ["--data.train", "{ws}/nocol.parquet"], ["nocol.parquet:1:", '"text" is missing']),
    "json array not UTF-8": (P + ["--data.train", "{ws}/latin.json"], ["latin.json:2:", "not UTF-8"]),
    # model folders
    "model folder missing": (P + ["--model.from_pretrained", "{ws}/nomodel"], ["nomodel", "not found"]),
    "model without config": (P + ["--model.from_pretrained", "{ws}/noconfig"], ["config.json is missing"]),
    "pickle-only model": (P + ["--model.from_pretrained", "{ws}/pickle"], ["pickle", "refused"]),
    "model without weights": (P + ["--model.from_pretrained", "{ws}/noweights"], ["no weights"]),
    "tokenizer folder missing": (P + ["--tokenizer.path", "{ws}/notok"], ["notok", "tokenizer folder not found"]),
    "tokenizer folder empty": (P + ["--tokenizer.path", "{ws}/emptytok"], ["emptytok", "cannot load a tokenizer"]),
    # paths
    "run dir exists": (P + ["--run.dir", "{ws}/existing"], ["existing", "already exists"]),
    "resume missing run": (P + ["--run.dir", "{ws}/gone", "--resume"], ["gone", "does not exist"]),
    "run dir climbs out": (P + ["--run.dir", "../outside"], ['"run.dir"', ".."]),
    # CLI
    "unknown command": (["bogus"], ["invalid choice", "bogus"]),
    "stray argument": (P + ["stray"], ['unexpected argument "stray"']),
    "data check without path": (["data", "check"], ["required", "PATH"]),
    "data check missing file": (["data", "check", "{ws}/nope.jsonl"], ["nope.jsonl"]),
    "data check max-length without tokenizer": (["data", "check", "{ws}/pref.jsonl", "--max-length", "8"],
                                                ["needs a tokenizer"]),
    "data prepare unknown key": (["data", "prepare", "--inputs", "[{path: {ws}/pref.jsonl}]", "--outptu.dir", "x"],
                                 ['"outptu"', "did you mean"]),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input(case, ws, capsys):
    args, fragments = CASES[case]
    before = _tree(ws)
    code = main([a.replace("{ws}", str(ws)) for a in args])
    err = capsys.readouterr().err.strip()
    assert code == 2, (code, err)
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    for f in fragments:
        assert f in err, (f, err)
    assert _tree(ws) == before  # nothing written, earlier outputs untouched


def test_table_is_big_enough():
    assert len(CASES) >= 40
