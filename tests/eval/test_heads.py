"""Classification heads: the pooling choice, mean pooling over real tokens only, and saved
classifiers that load back with identical logits (on a tiny random BERT)."""
import json

import pytest
import torch
from peft import PeftModel
from transformers import AutoModel, BertConfig, BertModel

from tunesmith.core.errors import UserError
from tunesmith.eval.heads import (MeanPoolClassifier, build_classifier, load_classifier, resolve_pooling,
                                  save_classifier)

LORA = {"method": "lora", "rank": 4, "task": "seq_cls"}


@pytest.fixture()
def tiny_bert(tmp_path):
    """A random 2-layer BERT saved as a mean-pooling sentence-transformers folder."""
    torch.manual_seed(0)
    folder = tmp_path / "bert"
    BertModel(BertConfig(vocab_size=50, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=64)).save_pretrained(folder)
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_mean_tokens": True}))
    return folder


def _randomize(model):
    """Non-trivial trained-looking weights: LoRA B is zero at init, which would hide bugs."""
    torch.manual_seed(1)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if p.requires_grad:
                p.add_(0.1 * torch.randn_like(p))
    return model.eval()


def _batch():
    ids = torch.tensor([[2, 5, 7, 9, 3, 0, 0], [2, 11, 4, 8, 6, 12, 3]])
    mask = (ids != 0).long()
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids)}


def test_auto_pooling_follows_the_sentence_transformers_config(tiny_bert, tmp_path):
    assert resolve_pooling(tiny_bert, "auto") == "mean"
    (tiny_bert / "1_Pooling" / "config.json").write_text(json.dumps({"pooling_mode_cls_token": True}))
    assert resolve_pooling(tiny_bert, "auto") == "model"
    assert resolve_pooling(tmp_path, "auto") == "model"  # no sentence-transformers files
    assert resolve_pooling(tiny_bert, "mean") == "mean"
    with pytest.raises(UserError, match="unknown pooling"):
        resolve_pooling(tiny_bert, "max")
    assert isinstance(build_classifier(str(tiny_bert), _cfg(LORA), 2, 0, "mean"), MeanPoolClassifier)


def _cfg(d):
    from tunesmith.adapters import AdapterConfig
    return AdapterConfig(**d)


def test_mean_pooling_ignores_padding(tiny_bert):
    model = _randomize(build_classifier(str(tiny_bert), _cfg(LORA), 3, 0, "mean"))
    batch = _batch()
    with torch.no_grad():
        padded = model(**batch).logits[0]
        alone = model(**{k: v[:1, :5] for k, v in batch.items()}).logits[0]
        garbage = dict(batch, input_ids=batch["input_ids"].masked_fill(batch["attention_mask"] == 0, 17))
        other_pad = model(**garbage).logits[0]
    assert torch.allclose(padded, alone, atol=1e-5)
    assert torch.allclose(padded, other_pad, atol=1e-5)  # what sits under the mask does not count


def test_regression_head_uses_mse(tiny_bert):
    model = build_classifier(str(tiny_bert), _cfg(LORA), 1, 0, "mean")
    with torch.no_grad():
        out = model(**_batch(), labels=torch.tensor([0.5, 4.0]))
    assert out.logits.shape == (2, 1)
    assert out.loss.item() == pytest.approx(((out.logits[:, 0] - torch.tensor([0.5, 4.0])) ** 2).mean().item())


@pytest.mark.parametrize("method", ["lora", "full"])
def test_mean_pooled_classifier_round_trips(tiny_bert, tmp_path, method):
    adapter = _cfg({**LORA, "method": method})
    model = _randomize(build_classifier(str(tiny_bert), adapter, 2, 0, "mean"))
    out = save_classifier(model, tmp_path / "clf", adapter, base=tiny_bert)
    assert (out / "head.safetensors").is_file()
    assert (out / ("adapter_config.json" if method == "lora" else "model.safetensors")).is_file()
    loaded = load_classifier(out)
    with torch.no_grad():
        assert torch.equal(model(**_batch()).logits, loaded(**_batch()).logits)
    if method == "lora":  # the encoder part is a stock PEFT adapter for the bare AutoModel
        encoder = PeftModel.from_pretrained(AutoModel.from_pretrained(tiny_bert), out).eval()
        with torch.no_grad():
            assert torch.equal(encoder(**_batch()).last_hidden_state,
                               model.encoder(**_batch()).last_hidden_state)


def test_model_pooled_classifier_round_trips(tiny_bert, tmp_path):
    adapter = _cfg(LORA)
    model = _randomize(build_classifier(str(tiny_bert), adapter, 2, 0, "model"))
    assert not isinstance(model, MeanPoolClassifier)
    out = save_classifier(model, tmp_path / "clf", adapter, base=tiny_bert)
    loaded = load_classifier(out)
    with torch.no_grad():
        assert torch.allclose(model(**_batch()).logits, loaded(**_batch()).logits, atol=1e-6)


def test_mean_pooling_refuses_prompt_tuning(tiny_bert):
    with pytest.raises(UserError, match="pooling mean does not support"):
        build_classifier(str(tiny_bert), _cfg({"method": "prompt_tuning", "task": "seq_cls"}), 2, 0, "mean")


def test_a_classifier_of_another_task_is_a_starting_point(tiny_bert, tmp_path):
    """Intermediate-task training: a full fine-tune saved for a 3-label task starts a 2-label one
    (encoder kept, head fresh because its size differs) and a 2-label one (head kept too)."""
    full = _cfg({"method": "full", "task": "seq_cls"})
    first = _randomize(build_classifier(str(tiny_bert), full, 3, 0, "model"))
    folder = save_classifier(first, tmp_path / "nli3", full, base=tiny_bert)
    second = build_classifier(str(folder), full, 2, 0, "model")
    assert second.classifier.weight.shape == (2, 32)
    for name, p in first.bert.named_parameters():
        torch.testing.assert_close(p, second.bert.get_parameter(name), msg=name)
    third = build_classifier(str(save_classifier(second, tmp_path / "nli2", full, base=tiny_bert)), full, 2, 0,
                             "model")
    torch.testing.assert_close(third.classifier.weight, second.classifier.weight)


def test_a_full_mean_pooled_classifier_starts_another_task_mean_pooled(tiny_bert, tmp_path):
    full = _cfg({"method": "full", "task": "seq_cls"})
    first = _randomize(build_classifier(str(tiny_bert), full, 3, 0, "mean"))
    folder = save_classifier(first, tmp_path / "nli3", full, base=tiny_bert)
    assert resolve_pooling(folder, "auto") == "mean"  # its 1_Pooling/config.json says so
    second = build_classifier(str(folder), full, 2, 0, "auto")
    assert isinstance(second, MeanPoolClassifier) and second.classifier.out_features == 2
    with torch.no_grad():
        torch.testing.assert_close(second.encoder(**_batch()).last_hidden_state,
                                   first.encoder(**_batch()).last_hidden_state)


def test_a_classifier_starts_a_regression_task_and_back(tiny_bert, tmp_path):
    """problem_type recorded by the first task does not leak: 2 labels -> regression -> 2 labels."""
    full = _cfg({"method": "full", "task": "seq_cls"})
    two = save_classifier(build_classifier(str(tiny_bert), full, 2, 0, "model"), tmp_path / "two", full,
                          base=tiny_bert)
    reg = build_classifier(str(two), full, 1, 0, "model")
    assert reg.config.problem_type == "regression" and reg.classifier.out_features == 1
    out = reg(**_batch(), labels=torch.tensor([0.5, 2.0]))
    assert out.loss is not None
    back = build_classifier(str(save_classifier(reg, tmp_path / "reg", full, base=tiny_bert)), full, 2, 0, "model")
    assert back.config.problem_type is None
    back.eval()
    loss = back(**_batch(), labels=torch.tensor([0, 1])).loss
    assert torch.isclose(loss, torch.nn.functional.cross_entropy(back(**_batch()).logits, torch.tensor([0, 1])))
