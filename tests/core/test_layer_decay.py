"""Layer-wise learning-rate decay: depth from parameter names, the groups the Trainer's optimizer
gets, and the scheduler keeping their ratios."""
import pytest
import torch
from datasets import Dataset
from transformers import BertConfig, BertForSequenceClassification, Trainer, TrainerCallback, TrainingArguments

from tunesmith.core.layer_decay import layer_depth, use_layer_lr_decay


@pytest.mark.parametrize("name,depth", [
    ("bert.embeddings.word_embeddings.weight", 0),
    ("bert.embeddings.LayerNorm.bias", 0),
    ("bert.encoder.layer.0.attention.self.query.weight", 1),
    ("base_model.model.bert.encoder.layer.11.output.dense.lora_A.default.weight", 12),
    ("model.embed_tokens.weight", 0),
    ("model.layers.2.self_attn.q_proj.weight", 3),
    ("transformer.wte.weight", 0),
    ("transformer.h.3.mlp.c_fc.weight", 4),
    ("bert.pooler.dense.weight", None),
    ("model.norm.weight", None),
    ("classifier.bias", None),
    ("score.weight", None),
    ("gpt_neox.embed_in.weight", 0),
    ("embed_out.weight", None),  # GPT-NeoX's LM head
])
def test_depth_from_parameter_names(name, depth):
    assert layer_depth(name) == depth


def _trainer(tmp_path, decay, steps=0):
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=3,
                                                     num_attention_heads=2, intermediate_size=32, num_labels=2))
    data = Dataset.from_list([{"input_ids": [1, 2, 3, 4], "labels": i % 2} for i in range(8)])
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=1e-3, weight_decay=0.1, max_steps=max(steps, 1),
                             warmup_steps=0, per_device_train_batch_size=4, report_to=[], use_cpu=True,
                             disable_tqdm=True, save_strategy="no")
    return use_layer_lr_decay(Trainer(model=model, args=args, train_dataset=data), decay)


def test_groups_decay_per_block_and_keep_the_trainers_weight_decay_choice(tmp_path):
    trainer = _trainer(tmp_path, 0.5)
    groups = trainer.create_optimizer().param_groups
    names = {p: n for n, p in trainer.model.named_parameters()}
    seen = [names[p] for g in groups for p in g["params"]]
    assert sorted(seen) == sorted(names.values())  # every trainable parameter exactly once
    for g in groups:
        for p in g["params"]:
            n = names[p]
            depth = 4 if layer_depth(n) is None else layer_depth(n)  # 3 blocks: the head is depth 4
            assert g["lr"] == pytest.approx(1e-3 * 0.5 ** (4 - depth)), n
            assert g["weight_decay"] == (0.0 if "bias" in n or "LayerNorm" in n else 0.1), n
    assert type(trainer.optimizer).__name__ == "AdamW"


def test_the_scheduler_scales_every_group_and_decay_1_changes_nothing(tmp_path):
    trainer = _trainer(tmp_path / "a", 0.5, steps=4)
    seen = []

    class Record(TrainerCallback):
        def on_step_end(self, args, state, control, **kw):
            seen.append(sorted(set(trainer.lr_scheduler.get_last_lr())))
    trainer.add_callback(Record())
    trainer.train()
    assert seen[1][-1] == pytest.approx(1e-3 * 2 / 4)  # linear decay, half way
    for lrs in seen[:-1]:
        assert len(lrs) == 5 and all(b / a == pytest.approx(2.0) for a, b in zip(lrs, lrs[1:]))
    plain = _trainer(tmp_path / "b", 1.0)
    assert plain.optimizer_cls_and_kwargs is None
    assert {g["lr"] for g in plain.create_optimizer().param_groups} == {1e-3}


def test_a_trainer_given_its_optimizer_is_refused(tmp_path):
    trainer = _trainer(tmp_path, 1.0)
    trainer.optimizer = torch.optim.SGD(trainer.model.parameters(), lr=0.1)
    with pytest.raises(ValueError, match="given an optimizer"):
        use_layer_lr_decay(trainer, 0.8)
