"""SuperGLUE metrics as a local `evaluate` module (the Hub `super_glue` configs and input
formats), computed offline by tunesmith; `axg` adds gender parity.

    import evaluate
    from tunesmith.eval import metric_path
    metric = evaluate.load(metric_path("superglue"), "cb")
    metric.compute(predictions=[0, 1, 2], references=[0, 1, 1])  # {'accuracy': .667, 'f1': .556}
"""
import datasets
import evaluate

from tunesmith.eval import metrics

_CONFIGS = ("boolq", "cb", "copa", "multirc", "record", "rte", "wic", "wsc", "wsc.fixed", "axb", "axg")

_DESCRIPTION = "SuperGLUE metrics: accuracy, CB macro-F1, MultiRC EM/F1m/F1a, ReCoRD EM/F1, MCC, parity."
_KWARGS = """
Args:
    predictions: label ids; multirc: {"idx": {"paragraph", "question", "answer"}, "prediction"};
        record: {"idx": {"passage", "query"}, "prediction_text"}.
    references: label ids; record: {"idx": {"passage", "query"}, "answers": [str, ...]}.
Returns: cb: accuracy, f1 (macro); multirc: exact_match, f1_m, f1_a; record: exact_match, f1;
    axb: matthews_correlation; axg: accuracy, gender_parity (pairs = consecutive rows);
    every other config: accuracy.
"""
_CITATION = """@inproceedings{wang2019superglue, title={SuperGLUE: A Stickier Benchmark for
General-Purpose Language Understanding Systems}, author={Wang, Alex and others},
booktitle={NeurIPS}, year={2019}}"""


def _features(name):
    if name == "multirc":
        idx = {"answer": datasets.Value("int64"), "paragraph": datasets.Value("int64"),
               "question": datasets.Value("int64")}
        return {"predictions": {"idx": idx, "prediction": datasets.Value("int64")},
                "references": datasets.Value("int64")}
    if name == "record":
        idx = {"passage": datasets.Value("int64"), "query": datasets.Value("int64")}
        return {"predictions": {"idx": idx, "prediction_text": datasets.Value("string")},
                "references": {"idx": idx, "answers": datasets.Sequence(datasets.Value("string"))}}
    return {"predictions": datasets.Value("int64"), "references": datasets.Value("int64")}


class TunesmithSuperGlue(evaluate.Metric):
    def _info(self):
        if self.config_name not in _CONFIGS:
            raise KeyError(f'unknown SuperGLUE config "{self.config_name}"; choose one of {", ".join(_CONFIGS)}')
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features(_features(self.config_name)),
            codebase_urls=[], reference_urls=[], format="numpy" if self.config_name not in
            ("multirc", "record") else None)

    def _compute(self, predictions, references):
        name = self.config_name
        if name == "multirc":
            qids = [(p["idx"]["paragraph"], p["idx"]["question"]) for p in predictions]
            return metrics.multirc_scores([p["prediction"] for p in predictions], list(references), qids)
        if name == "record":
            # like the official scorer: every reference query counts; an unanswered one scores 0
            answered = {(p["idx"]["passage"], p["idx"]["query"]): p["prediction_text"] for p in predictions}
            keys = [(r["idx"]["passage"], r["idx"]["query"]) for r in references]
            scores = metrics.record_scores([answered.get(k, "") for k in keys],
                                           [r["answers"] if k in answered else [] for k, r in zip(keys, references)])
            return scores
        predictions, references = list(predictions), list(references)
        if name == "cb":
            return {"accuracy": metrics.accuracy(predictions, references),
                    "f1": metrics.macro_f1(predictions, references)}
        if name == "axb":
            return {"matthews_correlation": metrics.matthews(predictions, references)}
        if name == "axg":
            return {"accuracy": metrics.accuracy(predictions, references),
                    "gender_parity": metrics.gender_parity(predictions)}
        return {"accuracy": metrics.accuracy(predictions, references)}
