"""`tunesmith data check|prepare` as a user types them."""
import json

from helpers import run_cli


def test_data_check_reports_every_problem_and_exits_2(tmp_path):
    bad = tmp_path / "train.jsonl"
    bad.write_text('{"prompt": "hi", "chosen": "a", "rejected": "b"}\n{"prompt": "hi", "chosen": "a"}\n'
                   '{"prompt": "x", "chosen": "", "rejected": "b"}\n')
    proc = run_cli("data", "check", str(bad))
    assert proc.returncode == 2, proc.stderr
    assert "format preference" in proc.stdout
    assert 'train.jsonl:2: field "rejected" is missing' in proc.stdout
    assert "train.jsonl:3:" in proc.stdout and "Traceback" not in proc.stderr


def test_data_check_ok_and_prepare_writes_a_dataset(tmp_path):
    good = tmp_path / "alpaca.jsonl"
    rows = [{"instruction": f"Add {i} and {i + 1}", "output": str(2 * i + 1)} for i in range(40)]
    rows.append(rows[0])  # an exact duplicate for dedup to remove
    good.write_text("".join(json.dumps(r) + "\n" for r in rows))
    proc = run_cli("data", "check", str(good))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "rows: 41" in proc.stdout
    out = tmp_path / "prepared"
    proc = run_cli("data", "prepare", "--inputs", f"[{{path: {good}}}]", "--output.dir", str(out),
                   "--output.format", "jsonl", "--split.validation", "0.25")
    assert proc.returncode == 0, proc.stderr[-2000:]
    produced = sorted(p.name for p in out.iterdir())
    assert "data_card.md" in produced
    n = sum(len(p.read_text().splitlines()) for p in out.glob("*.jsonl") if p.stem in ("train", "validation"))
    assert n == 40
