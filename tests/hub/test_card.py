"""The generated model card: metadata read back with huggingface_hub, model-index values."""
from __future__ import annotations

import json

import pytest
from huggingface_hub import ModelCard

from tunesmith.core.errors import UserError
from tunesmith.hub import model_card
from tunesmith.hub.card import find_artifact
from tunesmith.report import read_run


def _index(card: ModelCard) -> dict[tuple[str, str], float]:
    return {(r.dataset_name, r.metric_name or r.metric_type): r.metric_value for r in card.data.eval_results}


def test_adapter_card_metadata_and_eval_results(pipeline_dir):
    text = model_card(pipeline_dir / "2-sft", {"repo": "alice/tiny-sft", "license": "apache-2.0",
                                               "datasets": ["alice/upper-tasks"], "base_model": "alice/nano",
                                               "eval_runs": [str(pipeline_dir / "3-eval")]})
    card = ModelCard(text)
    meta = card.data.to_dict()
    assert meta["base_model"] == "alice/nano" and meta["library_name"] == "peft"
    assert meta["pipeline_tag"] == "text-generation" and meta["license"] == "apache-2.0"
    assert meta["tags"] == ["tunesmith", "lora"] and meta["datasets"] == ["alice/upper-tasks"]
    assert card.data.model_name == "tiny-sft"
    assert _index(card) == {("SuperGLUE RTE", "accuracy (fewshot)"): 0.625,
                            ("SuperGLUE CB", "accuracy (fewshot)"): 0.5, ("SuperGLUE CB", "f1 (fewshot)"): 0.25}
    assert {r.dataset_type for r in card.data.eval_results} == {"aps/super_glue"}
    assert 'AutoPeftModelForCausalLM.from_pretrained("alice/tiny-sft")' in text
    assert "| adapter method | lora |" in text


def test_full_model_card_reports_held_out_loss(pipeline_dir):
    run = pipeline_dir / "1-pretrain"
    results = json.loads((run / "results.json").read_text())["metrics"]
    card = ModelCard(model_card(run, {"repo": "alice/nano"}))
    meta = card.data.to_dict()
    assert meta["library_name"] == "transformers" and "base_model" not in meta
    assert "license" not in meta            # never guessed
    index = _index(card)
    assert index[("held-out split of the training data", "loss")] == round(results["eval_loss"], 6)
    assert index[("held-out split of the training data", "perplexity")] == round(results["perplexity"], 6)
    assert "trained from scratch" in card.text


def test_local_base_is_not_put_in_metadata(pipeline_dir):
    """The adapter records a local base folder: not a Hub id, so no base_model, and the usage
    snippet says to load the base explicitly."""
    text = model_card(pipeline_dir / "2-sft", {"repo": "alice/tiny-sft"})
    assert "base_model" not in ModelCard(text).data.to_dict()
    assert "1-pretrain/model" in text and "PeftModel.from_pretrained(base" in text


def test_pipeline_card_uses_the_last_model_and_its_eval_stage(pipeline_dir):
    info = read_run(pipeline_dir)
    assert find_artifact(info).run.name == "2-sft"
    card = ModelCard(model_card(pipeline_dir, {"repo": "alice/pipe"}))
    assert ("SuperGLUE RTE", "accuracy (fewshot)") in _index(card)


def test_sequence_classification_model_gets_its_pipeline_tag(tmp_path):
    run = tmp_path / "cls"
    (run / "model").mkdir(parents=True)
    (run / "model" / "config.json").write_text(json.dumps({"architectures": ["BertForSequenceClassification"]}))
    (run / "results.json").write_text(json.dumps({"metrics": {"eval_accuracy": 0.75, "eval_runtime": 3.0}}))
    card = ModelCard(model_card(run, {"repo": "alice/cls"}))
    assert card.data.pipeline_tag == "text-classification"
    assert _index(card) == {("held-out split of the training data", "accuracy"): 0.75}


def test_bad_card_inputs(pipeline_dir, tmp_path):
    with pytest.raises(UserError, match="nothing to push"):
        model_card(pipeline_dir / "3-eval", {"repo": "alice/x"})
    with pytest.raises(UserError, match="not an eval run") as e:
        model_card(pipeline_dir / "2-sft", {"repo": "alice/x", "eval_runs": [str(pipeline_dir / "1-pretrain")]})
    assert 'field "eval_runs"' in str(e.value)
    with pytest.raises(UserError, match='config key "repo"'):
        model_card(pipeline_dir / "2-sft", {"repo": "alice/bad name"})
    with pytest.raises(UserError, match='unknown config key "privat"; did you mean "private"'):
        model_card(pipeline_dir / "2-sft", {"repo": "alice/x", "privat": True})


def test_card_reads_the_adapter_record_tunesmith_writes():
    from tunesmith.adapters.artifacts import RECORD
    from tunesmith.hub.card import ADAPTER_RECORD

    assert ADAPTER_RECORD == RECORD
