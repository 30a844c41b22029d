"""The shipped local `evaluate` scripts load offline and give the same numbers as metrics.py."""
import evaluate
import pytest

from tunesmith.core.errors import UserError
from tunesmith.eval import metric_path


def test_glue_module_loads_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    cola = evaluate.load(metric_path("glue"), "cola")
    assert cola.compute(predictions=[1, 0, 1], references=[1, 0, 0]) == {"matthews_correlation": pytest.approx(0.5)}
    mrpc = evaluate.load(metric_path("glue"), "mrpc")
    got = mrpc.compute(predictions=[1, 1, 0, 0, 1], references=[1, 0, 0, 1, 1])
    assert got == pytest.approx({"accuracy": 0.6, "f1": 2 / 3})
    stsb = evaluate.load(metric_path("glue"), "stsb")
    assert stsb.compute(predictions=[1.0, 2.0, 3.0], references=[1.0, 2.0, 4.0])["pearson"] == pytest.approx(0.98198, abs=1e-5)


def test_super_glue_module_structured_inputs(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    multirc = evaluate.load(metric_path("superglue"), "multirc")
    preds = [{"idx": {"paragraph": 0, "question": q, "answer": a}, "prediction": p}
             for q, a, p in [(0, 0, 1), (0, 1, 0), (1, 0, 1), (1, 1, 1)]]
    got = multirc.compute(predictions=preds, references=[1, 0, 0, 1])
    assert got == pytest.approx({"exact_match": 0.5, "f1_m": 2 / 3, "f1_a": 0.8})
    record = evaluate.load(metric_path("superglue"), "record")
    idx = [{"passage": 0, "query": 0}, {"passage": 0, "query": 1}]
    got = record.compute(predictions=[{"idx": idx[0], "prediction_text": "the Eiffel Tower"},
                                      {"idx": idx[1], "prediction_text": "Eiffel Tower Paris"}],
                         references=[{"idx": idx[0], "answers": ["Paris", "Eiffel Tower"]},
                                     {"idx": idx[1], "answers": ["Eiffel Tower"]}])
    assert got == pytest.approx({"exact_match": 0.5, "f1": 0.9})
    cb = evaluate.load(metric_path("superglue"), "cb")
    assert cb.compute(predictions=[0, 1, 2], references=[0, 1, 1]) == pytest.approx({"accuracy": 2 / 3, "f1": 5 / 9})


def test_unknown_benchmark_or_config():
    with pytest.raises(UserError, match="no evaluate module"):
        metric_path("squad")
    with pytest.raises(KeyError, match="unknown GLUE config"):
        evaluate.load(metric_path("glue"), "colaa")
