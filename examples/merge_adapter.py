"""Merge the SFT LoRA adapter into its base: a plain model folder for AutoModelForCausalLM.

    python examples/merge_adapter.py [OUT_DIR]      # after examples/sft_lora.py
"""
import sys

from transformers import AutoModelForCausalLM

from tunesmith.adapters import merge

out = sys.argv[1] if len(sys.argv) > 1 else "runs/examples"
merged = merge(f"{out}/sft/model", f"{out}/merged")
model = AutoModelForCausalLM.from_pretrained(merged)
print(f"merged model: {merged} ({sum(p.numel() for p in model.parameters())} parameters)")
