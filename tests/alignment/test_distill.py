"""Distillation stage (TRL's GKD trainer): the student's held-out KL(teacher || student) falls for
full, LoRA and QLoRA students, off- and on-policy; a tokenizer mismatch is one clear error."""
from __future__ import annotations


import pytest

from alignment.test_rl_fixtures import nano_base, save_tiny_student, tiny_student, train  # noqa: F401
from tunesmith.alignment.distill import distill, heldout_kl
from tunesmith.core.errors import UserError

TASKS = {"names": ["add", "upper"], "train_rows": 200, "eval_rows": 40}


def _distill(student, teacher, tmp_path, name: str, method: str, steps: int = 20, seed: int = 0, lr: float = 3e-3,
             **distill_opts):
    return distill(model={"path": str(student)}, teacher={"path": str(teacher)},
                   adapter={"method": method, "rank": 8}, tasks=TASKS, distill=distill_opts,
                   train=train(max_steps=steps, batch_size=8, lr=lr, seed=seed),
                   run={"dir": str(tmp_path / name)})


# Teacher: the 60-step nano base (2 layers, hidden 64); student: a fresh 1-layer, hidden-32 llama
# with the same tokenizer. KL(teacher || student) is measured on 40 held-out task conversations
# (add/upper items never trained on), teacher-forced, in nats per completion token; it is
# deterministic given the weights. Measured after/before ratios, seeds 0-2, 20 steps: full
# 0.051-0.053 (lr 3e-3); LoRA 0.879 and QLoRA 0.878-0.879 at lr 1e-2 (0.887-0.890 at 3e-3, the
# same at 3e-2: rank-8 adapters on a random 1-layer student with frozen embeddings reach a floor).
# Seeds move a ratio by <= 0.004 and no training leaves it at exactly 1, so the thresholds (0.3
# full, 0.95 adapters) sit many spreads away from both no-effect and the observed effect.
@pytest.mark.parametrize("method,lr,ratio", [("full", 3e-3, 0.3), ("lora", 1e-2, 0.95), ("qlora", 1e-2, 0.95)])
def test_forward_kl_moves_student_toward_teacher(nano_base, tiny_student, tmp_path, method, lr, ratio):
    m = _distill(tiny_student, nano_base, tmp_path, method, method, lr=lr).metrics
    assert m["after/kl_teacher_student"] < ratio * m["before/kl_teacher_student"], m
    assert m["steps"] == 20


def test_on_policy_reverse_kl(nano_base, tiny_student, tmp_path):
    # fully on-policy (student samples 8 tokens per prompt), reverse KL, 10 steps: ratio
    # 0.128-0.144 over seeds 0-2; 0.4 is far from both 1 (no effect) and the observed ratio
    m = _distill(tiny_student, nano_base, tmp_path, "onpolicy", "full", steps=10, divergence="reverse_kl",
                 on_policy=1.0, max_new_tokens=8).metrics
    assert m["after/kl_teacher_student"] < 0.4 * m["before/kl_teacher_student"], m


def test_heldout_kl_of_a_model_to_itself_is_zero(nano_base):
    from transformers import AutoModelForCausalLM

    from tunesmith.alignment.common import ModelSection, load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(str(nano_base))
    tok = load_tokenizer(ModelSection(path=str(nano_base)))
    rows = [{"messages": [{"role": "user", "content": "What is 2 plus 2?"},
                          {"role": "assistant", "content": "4"}]}]
    assert heldout_kl(model, model, tok, rows, 64) == pytest.approx(0.0, abs=1e-6)


def test_tokenizer_mismatch_is_refused(nano_base, tmp_path):
    from transformers import AutoTokenizer

    teacher = save_tiny_student(nano_base, tmp_path / "teacher", hidden=64)
    tok = AutoTokenizer.from_pretrained(str(teacher))
    tok.add_tokens(["<extra_token>"])
    tok.save_pretrained(str(teacher))
    student = save_tiny_student(nano_base, tmp_path / "student")
    with pytest.raises(UserError, match=r"teacher.*field \"teacher.path\" the teacher's tokenizer differs .*"
                                        r"'<extra_token>'"):
        _distill(student, teacher, tmp_path, "mismatch", "full", steps=1)
