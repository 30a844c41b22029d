"""Knowledge distillation: a student (any size, LoRA/QLoRA or full) learns the teacher's next-token
distributions through TRL's GKD trainer: forward KL, reverse KL or a generalized JSD on the
logits, on the data's completions (off-policy) or, with `distill.on_policy` > 0, on completions
the student samples itself (on-policy, GKD's lambda). Teacher and student must share one
tokenizer; tunesmith checks that before anything is trained and reports the held-out
KL(teacher || student) before and after.

    import tunesmith as ts
    result = ts.distill(model={"path": "runs/student/model"}, teacher={"path": "runs/teacher/model"},
                        tasks={"names": ["add"]}, distill={"divergence": "forward_kl"})
    print(result.metrics["before/kl_teacher_student"], result.metrics["after/kl_teacher_student"])
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import Field

from ..adapters import AdapterConfig
from ..compat import trl_experimental
from ..core.config import Section, coerce
from ..core.errors import UserError
from ..core.modelio import load_causal_lm
from ..core.result import StageResult
from ..core.rundir import RunDir
from ..core.train_config import RunSection, TrainSection
from ..core.trainer_args import training_kwargs
from ..data import DataPrepConfig
from . import toy_tasks as task_lib
from .toy_tasks import end_of_turn_ids
from ..lifecycle import Training, run_stage
from ..adapters.chain import model_folder
from .common import ModelSection, load_policy, load_tokenizer
from .stage_data import TasksSection, stage_data
from ..hub.config import PushConfig

# GKD's beta: 0 is KL(teacher || student), 1 is KL(student || teacher), in between a generalized JSD
DIVERGENCE_BETA = {"forward_kl": 0.0, "reverse_kl": 1.0}


class DistillSection(Section):
    divergence: Literal["forward_kl", "reverse_kl", "jsd"] = Field("forward_kl", description=(
        "loss on the logits: forward_kl KL(teacher||student) (mode covering) | reverse_kl KL(student||teacher) "
        "(mode seeking) | jsd (generalized Jensen-Shannon, weight jsd_beta)"))
    jsd_beta: float = Field(0.5, gt=0, lt=1, description="jsd: interpolation weight (0.5: the symmetric JSD)")
    on_policy: float = Field(0.0, ge=0, le=1, description=(
        "share of steps trained on completions the student samples itself (GKD's lambda; 0: the data's own "
        "completions only, 1: fully on-policy)"))
    teacher_generated: bool = Field(False, description=(
        "off-policy steps use completions sampled from the teacher instead of the data's (sequence-level KD)"))
    temperature: float = Field(1.0, gt=0, description="sampling temperature of on-policy completions")
    max_new_tokens: int = Field(32, ge=1, description="tokens sampled per on-policy completion")
    max_length: int = Field(256, ge=8, description="tokens per example (the oldest prompt tokens are cut first)")


class DistillConfig(Section):
    """A distillation run. Example:

    >>> coerce(DistillConfig, {"model": {"path": "s"}, "teacher": {"path": "t"}}).distill.divergence
    'forward_kl'
    """

    model: ModelSection = Field(description="the student")
    teacher: ModelSection = Field(description=(
        "the teacher (a model folder, run directory or adapter folder, merged; same tokenizer as the student)"))
    adapter: AdapterConfig = Field(default_factory=lambda: AdapterConfig(method="full"), description=(
        "how the student trains (full by default: students are small)"))
    data: DataPrepConfig = Field(default_factory=DataPrepConfig, description=(
        "instruction/chat rows; their prompts (and, off-policy, completions) are distilled on"))
    tasks: TasksSection = Field(default_factory=TasksSection, description=(
        "embedded tasks: rows when data.inputs is empty; held-out rows for the KL when the data has no validation split"))
    distill: DistillSection = Field(default_factory=DistillSection, description="distillation options")
    train: TrainSection = Field(default_factory=lambda: TrainSection(lr=1e-3, max_steps=100, warmup_steps=10),
                                description="optimisation")
    run: RunSection = Field(default_factory=RunSection, description="run directory")
    push_to_hub: PushConfig | None = Field(None, description="push the result to the Hub at the end: {repo: user/name, ...}")


def distill(config: DistillConfig | dict | str | None = None, **sections: Any) -> StageResult:
    """Distil the teacher into the student as `config` says. Metrics: mean per-token
    KL(teacher || student) on held-out completions before and after
    (`before/kl_teacher_student`, `after/kl_teacher_student`), train loss and steps.

    distill(model={"path": "student"}, teacher={"path": "teacher"}, tasks={"names": ["add"]})
    """
    cfg = coerce(DistillConfig, config, **sections)
    d = cfg.distill

    def load(run: RunDir, dtype: str) -> SimpleNamespace:
        student, tok = load_policy(cfg.model, cfg.adapter,
                                    gradient_checkpointing=cfg.train.gradient_checkpointing is True)
        teacher_cfg = cfg.teacher.model_copy(update={"path": str(model_folder(cfg.teacher.path, "teacher.path"))})
        teacher = load_causal_lm(teacher_cfg.path, trust_remote_code=teacher_cfg.trust_remote_code,
                                 allow_pickle=teacher_cfg.allow_pickle).eval()
        check_same_tokenizer(tok, load_tokenizer(teacher_cfg), student, teacher, cfg.teacher.path)
        train_ds, heldout = conversation_data(cfg, run, tok)
        return SimpleNamespace(student=student, teacher=teacher, tok=tok, train=train_ds, heldout=heldout,
                               environment={"train_rows": len(train_ds)})

    def build(x: SimpleNamespace, run: RunDir, dtype: str, resuming: bool) -> Training:
        GKDConfig, GKDTrainer = trl_experimental("gkd")
        before = {"before/kl_teacher_student": heldout_kl(x.student, x.teacher, x.tok, x.heldout, d.max_length)}
        args = GKDConfig(**training_kwargs(cfg.train, run, dtype, has_eval=False),
                         beta=DIVERGENCE_BETA.get(d.divergence, d.jsd_beta), lmbda=d.on_policy,
                         seq_kd=d.teacher_generated, temperature=d.temperature, max_new_tokens=d.max_new_tokens,
                         max_length=d.max_length, disable_dropout=True)
        trainer = GKDTrainer(model=x.student, teacher_model=x.teacher, args=args, train_dataset=x.train,
                             processing_class=x.tok)
        trainer.generation_config.eos_token_id = end_of_turn_ids(x.tok)  # on-policy samples stop at the turn's end
        return Training(trainer, before, lambda model: {
            "after/kl_teacher_student": heldout_kl(model, x.teacher, x.tok, x.heldout, d.max_length)})

    return run_stage("distill", cfg, load, build)


def check_same_tokenizer(student_tok, teacher_tok, student, teacher, teacher_path: str) -> None:
    """UserError unless both tokenizers map every token to the same id (same special tokens too) and
    both models' vocabularies (output sizes) match: logits are compared position by position."""
    s_vocab, t_vocab = student_tok.get_vocab(), teacher_tok.get_vocab()
    if s_vocab != t_vocab:
        differ = sorted(set(s_vocab.items()) ^ set(t_vocab.items()), key=lambda kv: kv[1])
        examples = ", ".join(repr(tok) for tok, _ in differ[:3])
        raise UserError(f"the teacher's tokenizer differs from the student's ({len(s_vocab)} vs {len(t_vocab)} "
                        f"tokens; {len(differ)} token/id pairs differ, e.g. {examples})", file=teacher_path,
                        field="teacher.path", fix="distil between models that share one tokenizer (e.g. "
                        "pretrain the student with --tokenizer.path <teacher>/tokenizer)")
    for name in ("eos_token_id", "bos_token_id", "pad_token_id"):
        if getattr(student_tok, name) != getattr(teacher_tok, name):
            raise UserError(f"teacher and student tokenizers disagree on {name} ({getattr(teacher_tok, name)} vs "
                            f"{getattr(student_tok, name)})", file=teacher_path, field="teacher.tokenizer",
                            fix="use the same tokenizer folder for both (model.tokenizer / teacher.tokenizer)")
    s_out = student.get_output_embeddings().weight.shape[0]
    t_out = teacher.get_output_embeddings().weight.shape[0]
    if s_out != t_out:
        raise UserError(f"the teacher predicts {t_out} tokens, the student {s_out}", file=teacher_path,
                        field="teacher.path", fix="build both with the same vocabulary size")


def conversation_data(cfg: DistillConfig, run, tok) -> tuple[Any, list[dict]]:
    """(training rows as a Dataset of `messages`, held-out `messages` rows)."""
    from datasets import Dataset

    t = cfg.tasks
    splits = stage_data(cfg.data, t, run, tok, "instruction")
    train = splits["train"].map(_as_messages, remove_columns=splits["train"].column_names)
    heldout = [_as_messages(r) for r in splits["validation"]] if "validation" in splits else []
    if not heldout and t.names:
        heldout = [{"messages": r["messages"]} for r in
                   task_lib.instruction_rows(t.names, t.eval_rows, seed=t.seed + 1, split="heldout")]
    if not heldout:
        raise UserError("no held-out rows to measure KL(teacher || student) on", field="data.split.validation",
                        fix="set data.split.validation (e.g. 0.1) or name embedded tasks in tasks.names")
    return Dataset.from_list([dict(r) for r in train]), heldout


def _as_messages(row: dict) -> dict:
    if "messages" in row:
        return {"messages": row["messages"]}
    return {"messages": list(row["prompt"]) + list(row["completion"])}


def heldout_kl(student, teacher, tok, rows: list[dict], max_length: int, batch_size: int = 32) -> float:
    """Mean per-token KL(teacher || student) over the completion tokens of `rows` (teacher-forced on
    the rows' own completions), in nats.

    heldout_kl(student, teacher, tok, [{"messages": [user, assistant]}], 256)
    # -> 0.41
    """
    (DataCollatorForChatML,) = trl_experimental("chatml_collator")
    collate = DataCollatorForChatML(tokenizer=tok, max_length=max_length)
    was_training = student.training
    student.eval()
    total, count = 0.0, 0
    try:
        for start in range(0, len(rows), batch_size):
            batch = collate(rows[start:start + batch_size])
            ids, mask = batch["input_ids"].to(student.device), batch["attention_mask"].to(student.device)
            keep = batch["labels"][:, 1:].to(student.device) != -100
            with torch.no_grad():
                s = F.log_softmax(student(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)
                t = F.log_softmax(teacher(input_ids=ids.to(teacher.device),
                                          attention_mask=mask.to(teacher.device)).logits[:, :-1].float(), -1)
            kl = (t.exp() * (t - s.to(t.device))).sum(-1)
            total += kl[keep.to(kl.device)].sum().item()
            count += int(keep.sum())
    finally:
        student.train(was_training)
    return round(total / max(count, 1), 5)
