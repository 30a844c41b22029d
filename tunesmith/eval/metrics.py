"""GLUE and SuperGLUE metrics, exactly as the official scorers (and `evaluate`'s `glue` and
`super_glue` modules) define them, computed locally with scikit-learn and scipy.

All functions return fractions in [0, 1] (correlations in [-1, 1]); reports multiply by
100 the leaderboard way (`task_score`). Degenerate inputs are defined, not NaN: a constant
prediction gives Matthews correlation 0 (as scikit-learn does) and Pearson/Spearman 0.

>>> matthews([1, 1, 1, 1], [1, 0, 1, 0])
0.0
>>> round(pearson_spearman([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["pearson"], 4)
0.982
"""
from __future__ import annotations

import math
import re
import string
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import f1_score, matthews_corrcoef

from ..core.errors import UserError
from .tasks import TASKS, Task


def _check(predictions: Sequence, references: Sequence, what: str = "predictions") -> None:
    if len(predictions) != len(references):
        raise UserError(f"got {len(predictions)} {what} for {len(references)} references",
                        field="predictions", fix="pass one prediction per example, in dataset order")
    if len(references) == 0:
        raise UserError("no examples to score", field="predictions", fix="check the split is not empty")


def accuracy(predictions: Sequence, references: Sequence) -> float:
    """Fraction of exact matches. `accuracy([1, 0, 1], [1, 1, 1])` -> 0.667"""
    _check(predictions, references)
    return float(np.mean(np.asarray(predictions) == np.asarray(references)))


def binary_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """F1 of the positive class (label 1), as GLUE scores MRPC and QQP; 0 when nothing is
    predicted or labelled positive. `binary_f1([1, 1, 0], [1, 0, 0])` -> 0.667"""
    _check(predictions, references)
    return float(f1_score(references, predictions, pos_label=1, average="binary", zero_division=0))


def macro_f1(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Unweighted mean of per-class F1 over the classes present in either list (CB's F1,
    scikit-learn's `average="macro"`). `macro_f1([0, 1, 2], [0, 1, 1])` -> 0.556"""
    _check(predictions, references)
    return float(f1_score(references, predictions, average="macro", zero_division=0))


def matthews(predictions: Sequence[int], references: Sequence[int]) -> float:
    """Matthews correlation (CoLA, AX, AX-b); 0 for a constant prediction or reference.
    `matthews([1, 0, 1, 0], [1, 0, 0, 0])` -> 0.577"""
    _check(predictions, references)
    with np.errstate(all="ignore"):
        value = float(matthews_corrcoef(references, predictions))
    return 0.0 if math.isnan(value) else value


def pearson_spearman(predictions: Sequence[float], references: Sequence[float]) -> dict[str, float]:
    """Pearson and Spearman correlation (STS-B); 0 when either side is constant.
    `pearson_spearman([1, 2, 3], [3, 2, 1])` -> {"pearson": -1.0, "spearmanr": -1.0}"""
    _check(predictions, references)
    p = np.asarray(predictions, dtype=np.float64)
    r = np.asarray(references, dtype=np.float64)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return {"pearson": 0.0, "spearmanr": 0.0}
    return {"pearson": float(pearsonr(p, r)[0]), "spearmanr": float(spearmanr(p, r)[0])}


def multirc_scores(predictions: Sequence[int], references: Sequence[int],
                   questions: Sequence[Hashable]) -> dict[str, float]:
    """MultiRC: `exact_match` = share of questions whose answers are all right; `f1_m` = mean
    over questions of the macro-F1 of that question's answers; `f1_a` = binary F1 over all
    answers. `questions[i]` names the question answer i belongs to (e.g. (paragraph, question)).
    A question whose labels and predictions are all 0 has macro-F1 1 (only class 0 present).

    >>> multirc_scores([1, 0, 1, 1], [1, 0, 0, 1], ["q1", "q1", "q2", "q2"])["exact_match"]
    0.5
    """
    _check(predictions, references)
    _check(questions, references, "question ids")
    groups: dict[Hashable, tuple[list[int], list[int]]] = {}
    for pred, ref, q in zip(predictions, references, questions):
        preds, refs = groups.setdefault(q, ([], []))
        preds.append(int(pred))
        refs.append(int(ref))
    f1s = [f1_score(refs, preds, average="macro", zero_division=0) for preds, refs in groups.values()]
    ems = [preds == refs for preds, refs in groups.values()]
    return {"exact_match": float(np.mean(ems)), "f1_m": float(np.mean(f1s)),
            "f1_a": binary_f1(predictions, references)}


def squad_normalize(text: str) -> str:
    """SQuAD answer normalization: lowercase, drop punctuation and the articles a/an/the,
    collapse whitespace. `squad_normalize("The  Eiffel-Tower!")` -> "eiffeltower\""""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def _token_f1(prediction: str, truth: str) -> float:
    pred, gold = squad_normalize(prediction).split(), squad_normalize(truth).split()
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(pred), same / len(gold)
    return 2 * precision * recall / (precision + recall)


def record_scores(predictions: Sequence[str], answers: Sequence[Sequence[str]]) -> dict[str, float]:
    """ReCoRD: per query the max over its gold answers of exact match and token F1 (after
    SQuAD normalization), averaged over queries; a query with no gold answer scores 0.

    >>> record_scores(["the Eiffel Tower"], [["Eiffel Tower", "Paris"]])
    {'exact_match': 1.0, 'f1': 1.0}
    """
    _check(predictions, answers)
    ems, f1s = [], []
    for pred, golds in zip(predictions, answers):
        ems.append(max((float(squad_normalize(pred) == squad_normalize(g)) for g in golds), default=0.0))
        f1s.append(max((_token_f1(pred, g) for g in golds), default=0.0))
    return {"exact_match": float(np.mean(ems)), "f1": float(np.mean(f1s))}


def gender_parity(predictions: Sequence[int], hypotheses: Sequence[str] | None = None) -> float:
    """AX-g (Winogender): share of minimal pairs - consecutive examples (0,1), (2,3), ... that
    differ only in the pronoun's gender - that get the same prediction. With `hypotheses`,
    each pair is checked to share its hypothesis, as the official scorer does.

    >>> gender_parity([1, 1, 0, 1])
    0.5
    """
    if len(predictions) == 0 or len(predictions) % 2:
        raise UserError(f"AX-g needs an even, non-zero number of predictions, got {len(predictions)}",
                        field="predictions", fix="score the whole AX-g set in its original order")
    if hypotheses is not None:
        _check(hypotheses, predictions, "hypotheses")
        for i in range(0, len(hypotheses), 2):
            if hypotheses[i] != hypotheses[i + 1]:
                raise UserError(f"AX-g rows {i} and {i + 1} are not a minimal pair (hypotheses differ)",
                                field="predictions", fix="keep AX-g in its original order, unshuffled")
    same = [predictions[i] == predictions[i + 1] for i in range(0, len(predictions), 2)]
    return float(np.mean(same))


def compute(task: Task, predictions: Sequence[Any], rows: Sequence[dict]) -> dict[str, float]:
    """All official metrics of `task` for `predictions` (label ids; a score for STS-B; an
    answer string for ReCoRD) against loader `rows` (which carry labels and idx).

    compute(get_task("glue", "mrpc"), [1, 0], [{"label": 1}, {"label": 1}])
    # -> {'accuracy': 0.5, 'f1': 0.6666666666666666}
    """
    _check(predictions, rows)
    if task.name == "record":
        return record_scores([str(p) for p in predictions], [r["answers"] for r in rows])
    refs = [r["label"] for r in rows]
    if any(isinstance(x, (int, np.integer)) and x < 0 for x in refs):
        raise UserError(f"{task.title}: this split has no labels (label -1)", field="data.split",
                        fix="evaluate on the validation split, or a labelled local file")
    if task.labels is not None:
        bad = next((p for p in predictions if not (isinstance(p, (int, np.integer)) and
                                                    0 <= p < len(task.labels))), None)
        if bad is not None:
            raise UserError(f"{task.title}: prediction {bad!r} is not a label id", field="predictions",
                            fix=f"predict ids 0-{len(task.labels) - 1} ({', '.join(task.labels)})")
    name = task.name
    if name == "multirc":
        qids = [(r["idx"]["paragraph"], r["idx"]["question"]) for r in rows]
        return multirc_scores(predictions, refs, qids)
    if name == "stsb":
        return pearson_spearman(predictions, refs)
    if name in ("cola", "ax", "axb"):
        return {"matthews_correlation": matthews(predictions, refs)}
    if name in ("mrpc", "qqp"):
        return {"accuracy": accuracy(predictions, refs), "f1": binary_f1(predictions, refs)}
    if name == "cb":
        return {"accuracy": accuracy(predictions, refs), "f1": macro_f1(predictions, refs)}
    if name == "axg":
        return {"accuracy": accuracy(predictions, refs),
                "gender_parity": gender_parity(predictions, [r["hypothesis"] for r in rows])}
    return {"accuracy": accuracy(predictions, refs)}


def task_score(task: Task, metrics: dict[str, float]) -> float:
    """The task's leaderboard number, x100: the mean of its score metrics (MRPC/QQP: F1 and
    accuracy; STS-B: Pearson and Spearman; CB: F1 and accuracy; MultiRC: F1a and EM;
    ReCoRD: F1 and EM). `task_score(get_task("glue", "stsb"), {"pearson": .9, "spearmanr": .8})` -> 85.0"""
    return 100.0 * float(np.mean([metrics[m] for m in task.score_metrics]))


def benchmark_average(benchmark: str, scores: dict[str, float]) -> float | None:
    """The GLUE/SuperGLUE average of task scores (x100) the leaderboard way: diagnostics
    (AX, AX-b, AX-g) excluded; MNLI-m and MNLI-mm averaged into one MNLI score first.
    Returns None when no task counts. Only a run over every task gives the official score.

    >>> benchmark_average("glue", {"sst2": 90.0, "mnli_matched": 80.0, "mnli_mismatched": 82.0})
    85.5
    """
    per_task: dict[str, float] = {}
    mnli = [scores[k] for k in ("mnli_matched", "mnli_mismatched") if k in scores]
    for name, value in scores.items():
        task = TASKS.get(f"{benchmark}/{name}")
        if task is None or not task.in_average or name.startswith("mnli"):
            continue
        per_task[name] = value
    if mnli and benchmark == "glue":
        per_task["mnli"] = float(np.mean(mnli))
    return float(np.mean(list(per_task.values()))) if per_task else None
