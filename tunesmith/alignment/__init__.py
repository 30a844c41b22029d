"""Alignment stages: SFT, reward modeling, RLHF (GRPO/RLOO), DPO and variants, KTO, ORPO,
SimPO, distillation, and the pipeline that chains them."""
