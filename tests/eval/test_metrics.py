"""Every metric against values computed by hand (worked in the comments)."""
import math

import pytest

from tunesmith.core.errors import UserError
from tunesmith.eval.metrics import (accuracy, benchmark_average, binary_f1, compute, gender_parity, macro_f1,
                                    matthews, multirc_scores, pearson_spearman, record_scores, squad_normalize,
                                    task_score)
from tunesmith.eval.tasks import get_task


def test_accuracy_and_binary_f1():
    assert accuracy([1, 0, 1], [1, 1, 1]) == pytest.approx(2 / 3)
    # TP=2 (0, 4), FP=1 (1), FN=1 (3): P = R = 2/3
    assert binary_f1([1, 1, 0, 0, 1], [1, 0, 0, 1, 1]) == pytest.approx(2 / 3)
    assert binary_f1([0, 0], [0, 0]) == 0.0  # nothing positive: defined as 0


def test_matthews_by_hand_and_constant_prediction():
    # TP=1 TN=2 FP=1 FN=0: (1*2 - 1*0) / sqrt(2*1*3*2)
    assert matthews([1, 0, 1, 0], [1, 0, 0, 0]) == pytest.approx(2 / math.sqrt(12))
    assert matthews([1, 0, 1], [1, 0, 0]) == pytest.approx(0.5)
    assert matthews([1, 1, 1, 1], [1, 0, 1, 0]) == 0.0  # constant prediction: 0, not NaN
    assert matthews([0, 1, 1, 0], [1, 0, 0, 1]) == pytest.approx(-1.0)


def test_pearson_spearman_by_hand():
    # dx = (-1, 0, 1), dy = (-4/3, -1/3, 5/3): cov = 3, |dx| = sqrt 2, |dy| = sqrt(42)/3
    got = pearson_spearman([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])
    assert got["pearson"] == pytest.approx(9 / math.sqrt(84))
    assert got["spearmanr"] == pytest.approx(1.0)
    assert pearson_spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]) == {"pearson": 0.0, "spearmanr": 0.0}


def test_cb_macro_f1_by_hand():
    # class 0: F1 1; class 1: P 1 R 1/2 -> 2/3; class 2: predicted once, never true -> 0
    assert macro_f1([0, 1, 2], [0, 1, 1]) == pytest.approx((1 + 2 / 3 + 0) / 3)
    got = compute(get_task("superglue", "cb"), [0, 1, 2], [{"label": 0}, {"label": 1}, {"label": 1}])
    assert got == pytest.approx({"accuracy": 2 / 3, "f1": 5 / 9})


def test_multirc_em_f1m_f1a_by_hand():
    got = multirc_scores([1, 0, 1, 1], [1, 0, 0, 1], ["q1", "q1", "q2", "q2"])
    # q1 all right, q2 not -> EM 1/2
    assert got["exact_match"] == pytest.approx(0.5)
    # q1 macro-F1 = 1; q2 refs (0,1) preds (1,1): class0 F1 0, class1 P 1/2 R 1 -> 2/3; mean 1/3
    assert got["f1_m"] == pytest.approx((1 + 1 / 3) / 2)
    # over all answers TP=2 FP=1 FN=0 -> F1 0.8
    assert got["f1_a"] == pytest.approx(0.8)


def test_multirc_all_negative_question_and_grouping_from_rows():
    got = multirc_scores([0, 0], [0, 0], ["q", "q"])
    assert got == {"exact_match": 1.0, "f1_m": 1.0, "f1_a": 0.0}
    rows = [{"label": l, "idx": {"paragraph": p, "question": q, "answer": a}}
            for l, p, q, a in [(1, 0, 0, 0), (0, 0, 0, 1), (0, 0, 1, 0), (1, 1, 0, 0)]]
    got = compute(get_task("superglue", "multirc"), [1, 0, 1, 1], rows)
    # questions (0,0) right, (0,1) wrong, (1,0) right: question 0 of paragraph 1 is its own group
    assert got["exact_match"] == pytest.approx(2 / 3)
    with pytest.raises(UserError, match="no examples"):
        multirc_scores([], [], [])


def test_record_max_over_answers_with_squad_normalization():
    assert squad_normalize("The  Eiffel-Tower!") == "eiffeltower"
    # first: EM 1 after dropping "the"; second: tokens (eiffel tower paris) vs (eiffel tower): P 2/3 R 1 -> 0.8
    got = record_scores(["the Eiffel Tower", "Eiffel Tower Paris"], [["Paris", "Eiffel Tower"], ["Eiffel Tower"]])
    assert got == pytest.approx({"exact_match": 0.5, "f1": 0.9})
    assert record_scores(["x"], [[]]) == {"exact_match": 0.0, "f1": 0.0}


def test_gender_parity_pairs_and_checks():
    assert gender_parity([1, 1, 0, 1]) == 0.5
    rows = [{"label": 0, "hypothesis": h} for h in ("a", "a", "b", "b")]
    got = compute(get_task("superglue", "axg"), [0, 0, 1, 0], rows)
    assert got == {"accuracy": 0.75, "gender_parity": 0.5}
    with pytest.raises(UserError, match="not a minimal pair"):
        gender_parity([0, 0], ["a", "b"])
    with pytest.raises(UserError, match="even"):
        gender_parity([0, 0, 1])


def test_leaderboard_scores_and_averages():
    assert task_score(get_task("glue", "mrpc"), {"accuracy": 0.7, "f1": 0.8}) == pytest.approx(75.0)
    assert task_score(get_task("superglue", "multirc"),
                      {"exact_match": 0.2, "f1_a": 0.6, "f1_m": 0.9}) == pytest.approx(40.0)
    # MNLI-m/mm count as one task; AX is not in the average
    assert benchmark_average("glue", {"sst2": 90.0, "mnli_matched": 80.0, "mnli_mismatched": 82.0,
                                      "ax": 10.0}) == pytest.approx(85.5)
    assert benchmark_average("superglue", {"cb": 70.0, "rte": 60.0, "axb": 0.0, "axg": 99.0}) == pytest.approx(65.0)
    assert benchmark_average("superglue", {"axb": 5.0}) is None


def test_bad_predictions_raise_user_errors():
    rows = [{"label": 1}, {"label": 0}]
    with pytest.raises(UserError, match="got 1 predictions for 2 references"):
        compute(get_task("glue", "sst2"), [1], rows)
    with pytest.raises(UserError, match="not a label id"):
        compute(get_task("glue", "sst2"), [1, 2], rows)
    with pytest.raises(UserError, match="no labels"):
        compute(get_task("glue", "sst2"), [1, 0], [{"label": -1}, {"label": -1}])
