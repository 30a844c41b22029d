"""GLUE metrics as a local `evaluate` module (same configs and outputs as the Hub's `glue`,
plus `ax`), computed offline by tunesmith.

    import evaluate
    from tunesmith.eval import metric_path
    metric = evaluate.load(metric_path("glue"), "mrpc")
    metric.compute(predictions=[1, 0], references=[1, 1])  # {'accuracy': 0.5, 'f1': 0.667}
"""
import datasets
import evaluate

from tunesmith.eval import metrics

_CONFIGS = ("cola", "sst2", "mrpc", "stsb", "qqp", "mnli", "mnli_matched", "mnli_mismatched",
            "qnli", "rte", "wnli", "ax", "hans")

_DESCRIPTION = "GLUE metrics: accuracy, binary F1, Matthews correlation, Pearson/Spearman."
_KWARGS = """
Args:
    predictions: label ids (a float score for stsb).
    references: gold label ids (a float score for stsb).
Returns: cola/ax: matthews_correlation; stsb: pearson, spearmanr; mrpc/qqp: accuracy, f1;
    every other config: accuracy.
"""
_CITATION = """@inproceedings{wang2019glue, title={GLUE: A Multi-Task Benchmark and Analysis Platform
for Natural Language Understanding}, author={Wang, Alex and others}, booktitle={ICLR}, year={2019}}"""


class TunesmithGlue(evaluate.Metric):
    def _info(self):
        if self.config_name not in _CONFIGS:
            raise KeyError(f'unknown GLUE config "{self.config_name}"; choose one of {", ".join(_CONFIGS)}')
        value = datasets.Value("float32" if self.config_name == "stsb" else "int64")
        return evaluate.MetricInfo(
            description=_DESCRIPTION, citation=_CITATION, inputs_description=_KWARGS,
            features=datasets.Features({"predictions": value, "references": value}),
            codebase_urls=[], reference_urls=[], format="numpy")

    def _compute(self, predictions, references):
        name = self.config_name
        predictions, references = list(predictions), list(references)
        if name in ("cola", "ax"):
            return {"matthews_correlation": metrics.matthews(predictions, references)}
        if name == "stsb":
            return metrics.pearson_spearman(predictions, references)
        if name in ("mrpc", "qqp"):
            return {"accuracy": metrics.accuracy(predictions, references),
                    "f1": metrics.binary_f1(predictions, references)}
        return {"accuracy": metrics.accuracy(predictions, references)}
