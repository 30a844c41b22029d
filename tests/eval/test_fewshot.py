"""Few-shot log-likelihood scoring on a nano causal LM: exact log-probabilities, the
calibrated variant's arithmetic, demonstrations, and a full SuperGLUE score table."""
import json

import pytest
import torch

from tunesmith.core.errors import UserError
from tunesmith.eval import fewshot, markdown_table, run
from tunesmith.eval.loaders import load_split
from tunesmith.eval.tasks import get_task


def _naive(model, tok, context, cont):
    ctx = tok(context)["input_ids"]  # BOS only if the tokenizer adds one (tunesmith's BPE adds none), as lm-eval
    ids = ctx + tok(cont, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([ids])).logits[0].float(), -1)
    return sum(float(logp[i - 1, ids[i]]) for i in range(len(ctx), len(ids)))


def test_loglikelihood_matches_a_plain_forward_pass(nano_lm):
    model, tok, _ = nano_lm
    single = [" a", " b"]
    assert all(len(tok(s, add_special_tokens=False)["input_ids"]) == 1 for s in single)
    requests = [("The cat sat on", c) for c in single] + [("A much longer context, with words", " entailment"),
                                                          ("Short", " hypothesis maybe")]
    got = fewshot.loglikelihood(model, tok, requests, batch_size=2)
    want = [_naive(model, tok, c, x) for c, x in requests]
    assert got == pytest.approx(want, abs=1e-4)
    assert all(x < 0 for x in got)


def test_only_the_continuation_positions_reach_the_lm_head(nano_lm):
    """Scoring sends only the last positions of each row (its batch's longest continuation)
    through the LM head, not [rows, sequence, vocab], with the same scores as the whole sequence."""
    model, tok, _ = nano_lm
    requests = [("A much longer context, with many words in it", " entailment"), ("Short", " hypothesis maybe"),
                ("The cat sat on the mat and", " slept")]
    shapes = []
    hook = model.get_output_embeddings().register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape)))
    try:
        got = fewshot.loglikelihood(model, tok, requests, batch_size=3)
    finally:
        hook.remove()
    longest = max(len(tok(x, add_special_tokens=False)["input_ids"]) for _, x in requests)
    width = max(len(tok(c)["input_ids"]) + len(tok(x, add_special_tokens=False)["input_ids"]) - 1 for c, x in requests)
    assert len(shapes) == 1 and shapes[0][:2] == (3, longest) and longest < width
    assert got == pytest.approx([_naive(model, tok, c, x) for c, x in requests], abs=1e-4)


def test_calibrated_scores_subtract_the_content_free_prompt(nano_lm, superglue_dir):
    model, tok, _ = nano_lm
    task = get_task("superglue", "rte")
    rows = load_split(task, "validation", data_dir=superglue_dir)[:12]
    preds = fewshot.predict(model, tok, task, rows, scoring="calibrated")
    cf_prompt = task.template.format(premise="N/A", hypothesis="N/A")
    cf = torch.log_softmax(torch.tensor(fewshot.loglikelihood(model, tok, [(cf_prompt, v) for v in task.verbalizers])), 0)
    for row, pred in zip(rows, preds):
        ctx = task.template.format(**row)
        s = torch.log_softmax(torch.tensor([_naive(model, tok, ctx, v) for v in task.verbalizers]), 0)
        assert pred == int((s - cf).argmax())
    plain = fewshot.predict(model, tok, task, rows)
    for row, pred in zip(rows, plain):
        ctx = task.template.format(**row)
        assert pred == max(range(2), key=lambda j: _naive(model, tok, ctx, task.verbalizers[j]))


def test_demonstrations_are_seeded_and_checked(superglue_dir):
    task = get_task("superglue", "cb")
    train = load_split(task, "fewglue32", data_dir=superglue_dir)
    a = fewshot.demonstrations(task, train, 2, seed=1)
    assert a == fewshot.demonstrations(task, train, 2, seed=1) != fewshot.demonstrations(task, train, 2, seed=2)
    assert a.count("Answer:") == 2 and a.endswith("\n\n")
    assert fewshot.demonstrations(task, train, 0, seed=1) == ""
    with pytest.raises(UserError, match="33 demonstrations asked but the train split has 32"):
        fewshot.demonstrations(task, train, 33, seed=1)


def test_copa_record_and_stsb_renderings():
    copa = {"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.",
            "choice2": "He got a hole in his sock.", "question": "cause", "label": 0}
    ctx, choices, gold = fewshot.render(get_task("superglue", "copa"), copa)
    assert ctx == "The man broke his toe because" and choices[0] == " he dropped a hammer on his foot." and gold == 0
    rec = {"passage": "A\n@highlight\nB", "query": "Then @placeholder won.", "entities": ["Ann", "Bob"],
           "answers": ["Bob"]}
    ctx, choices, _ = fewshot.render(get_task("superglue", "record"), rec)
    assert ctx == "A\n- B\n\n- Then" and choices == [" Ann won.", " Bob won."]


def test_fewshot_run_produces_a_full_score_table(nano_lm, superglue_dir, tmp_path):
    _, _, folder = nano_lm
    tasks = "boolq,cb,copa,multirc,rte,wic,wsc,axb,axg"
    result = run(model={"path": str(folder)}, data={"benchmark": "superglue", "tasks": tasks,
                                                    "dir": str(superglue_dir), "eval_limit": 10},
                 fewshot={"k": 1, "scoring": "calibrated"}, run={"dir": str(tmp_path / "run")})
    assert [t.task for t in result.tasks] == tasks.split(",")
    for t in result.tasks:
        assert set(t.metrics) == set(get_task("superglue", t.task).metrics)
        assert -100.0 <= t.score <= 100.0 and t.n >= 10
    assert result.averaged_tasks == 7  # the diagnostics are not averaged; ReCoRD was not run
    assert result.average == pytest.approx(sum(t.score for t in result.tasks[:7]) / 7)
    table = markdown_table(result)
    assert table.count("\n") == 2 + 9 and "**SuperGLUE average** (7/8 tasks)" in table
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["tasks"][1]["metrics"] == pytest.approx(result.tasks[1].metrics)
    assert (tmp_path / "run" / "results.md").read_text().count("| CB |") == 1
    logged = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len([r for r in logged if "task" in r]) == 9 and "peak_rss_mb" in logged[-1]
    assert "| CB |" in (tmp_path / "run" / "report.md").read_text() and (tmp_path / "run" / "report.html").is_file()


def test_stsb_fewshot_predicts_expected_scores(nano_lm, glue_dir):
    model, tok, folder = nano_lm
    result = run(model={"path": str(folder)}, data={"tasks": "stsb", "dir": str(glue_dir), "eval_limit": 20})
    preds = fewshot.predict(model, tok, get_task("glue", "stsb"),
                            load_split(get_task("glue", "stsb"), "validation", data_dir=glue_dir)[:5])
    assert all(0.0 < p < 5.0 for p in preds)
    assert set(result.tasks[0].metrics) == {"pearson", "spearmanr"}


def test_run_rejects_missing_model_and_bad_task():
    with pytest.raises(UserError, match="no model given"):
        run(data={"tasks": "rte"})
    with pytest.raises(UserError, match='unknown glue task "rtee"'):
        run(model={"path": "x"}, data={"tasks": "rtee"})
    with pytest.raises(UserError, match="model folder not found"):
        run(model={"path": "/nonexistent/model"}, data={"tasks": "rte"})


def test_a_missing_eval_split_leaves_no_run_behind(nano_lm, glue_dir, tmp_path):
    """Every task's eval split loads before the run directory is made, so the second task's
    missing file leaves neither a new run nor a cleared old one."""
    _, _, folder = nano_lm
    tasks = {"tasks": "rte,mnli_matched", "dir": str(glue_dir), "eval_limit": 4}
    with pytest.raises(UserError, match="MNLI-m validation file not found"):
        run(model={"path": str(folder)}, data=tasks, run={"dir": str(tmp_path / "new")})
    assert not (tmp_path / "new").exists()
    old = tmp_path / "old"
    old.mkdir()
    (old / "metrics.jsonl").write_text('{"task": "rte"}\n')
    with pytest.raises(UserError, match="MNLI-m validation file not found"):
        run(model={"path": str(folder)}, data=tasks, run={"dir": str(old), "overwrite": True})
    assert (old / "metrics.jsonl").read_text() == '{"task": "rte"}\n'
