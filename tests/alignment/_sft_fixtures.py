"""Base models for the SFT / preference tests, built once per test session (module-level cache,
so every test file that asks gets the same folder)."""
from __future__ import annotations

from pathlib import Path

_CACHE: dict[str, Path] = {}


def pretrained(kind: str, root: Path) -> Path:
    """A model folder. `tiny`: a random 1-layer llama (hidden 32) with a 400-token BPE tokenizer
    trained on the corpus' first paragraphs (plumbing tests, ~2 s).
    `nano`: the nano preset, 150 steps at lr 3e-3 (eval loss ~1.0; proof tests, ~60-100 s)."""
    done = root / f"base-{kind}" / "model" / "config.json"
    if kind not in _CACHE and done.is_file():
        _CACHE[kind] = done.parent
    if kind not in _CACHE:
        import tunesmith as ts

        if kind == "tiny":
            _CACHE[kind] = _tiny(root / "base-tiny" / "model")
            return _CACHE[kind]
        cfg = {"model": {"size": "nano"}, "train": {"max_steps": 150, "lr": 3e-3}}
        cfg["run"] = {"dir": str(root / f"base-{kind}"), "sample_tokens": 0, "overwrite": True}
        cfg["train"].update(dtype="fp32", save_steps=10_000, eval_steps=10_000)
        _CACHE[kind] = Path(ts.pretrain(cfg).model_path)
    return _CACHE[kind]


def _tiny(folder: Path) -> Path:
    import torch

    from tunesmith.pretraining.corpus import __file__ as corpus_init
    from tunesmith.pretraining.presets import build_model
    from tunesmith.pretraining.tokenizer import train_tokenizer

    text = (Path(corpus_init).parent / "tinytales.txt").read_text(encoding="utf-8")
    tok = train_tokenizer(text.split("\n\n")[:400], vocab_size=400)
    torch.manual_seed(0)
    model = build_model("llama", "nano", layers=1, hidden=32, heads=2, kv_heads=1, intermediate=64, vocab=len(tok),
                        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder
