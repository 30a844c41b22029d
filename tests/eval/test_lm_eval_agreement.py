"""Few-shot log-likelihoods agree with lm-evaluation-harness (issue 19).

lm-eval 0.4 (lm_eval/models/huggingface.py, HFLM._loglikelihood_tokens; lm_eval/api/model.py,
TemplateLM._encode_pair / loglikelihood) scores a (context, continuation) pair by:
  * moving the context's trailing whitespace to the front of the continuation;
  * encoding the context and context + continuation the way the tokenizer encodes text (a BOS
    only if the tokenizer adds one), the continuation being the joint encoding past the context;
  * feeding the model `(context + continuation)[-(max_length + 1):][:-1]`, i.e. `max_length`
    tokens, and summing the log-probabilities of the continuation tokens.

The first test checks tunesmith against a few lines of torch implementing that rule (always
runs); the second against lm-eval's own HFLM (skipped where lm-eval is not installed). Both use
tiny random Llama models over real tokenizers: Llama 3.1 (adds <|begin_of_text|>), Qwen3 (adds
no BOS and has none) and tunesmith's own BPE (has <|bos|> but adds none: the case where always
prepending BOS went wrong).
"""
import copy
from pathlib import Path

import pytest
import torch

from tunesmith.core.errors import UserError
from tunesmith.eval import fewshot
from tunesmith.eval.loaders import load_split
from tunesmith.eval.tasks import get_task

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
TOKENIZERS = SHARED / "tokenizers"
# what each tokenizer does by default; tunesmith's own BPE has a BOS token but does not add it
ADDS_BOS = {"llama3_1": True, "qwen3": False, "tunesmith_bpe": False}
SHORT = 32  # a max_length that truncates most requests below

pytestmark = pytest.mark.skipif(not (TOKENIZERS / "llama3_1").is_dir() or not (SHARED / "superglue" / "RTE").is_dir(),
                                reason=f"shared test data not found under {SHARED}")


@pytest.fixture(scope="module")
def lms(nano_lm):
    """name -> (tiny random LlamaForCausalLM with the tokenizer's vocabulary, tokenizer)."""
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM
    out = {}
    for name in ADDS_BOS:
        tok = nano_lm[1] if name == "tunesmith_bpe" else AutoTokenizer.from_pretrained(TOKENIZERS / name)
        torch.manual_seed(0)
        cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                          tie_word_embeddings=True, initializer_range=0.5,
                          bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                          pad_token_id=tok.pad_token_id)
        out[name] = LlamaForCausalLM(cfg).eval(), tok
    return out


def _requests(k: int = 0) -> list[tuple[str, str]]:
    """8 RTE rows x 2 verbalizers (one-token continuations sharing a context; k RTE
    demonstrations in front), plus hand-written pairs: a context ending with a space, one
    ending with a newline, multi-token continuations, an empty context and a long one. Most
    requests are longer than SHORT tokens."""
    task = get_task("superglue", "rte")
    rows = load_split(task, "validation", data_dir=SHARED / "superglue")[:8]
    train = load_split(task, "train", data_dir=SHARED / "superglue")[:50]
    prefix = fewshot.demonstrations(task, train, k, seed=3)
    out = []
    for row in rows:
        context, choices, _ = fewshot.render(task, row)
        out += [(prefix + context, c) for c in choices]
    return out + [
        ("Question: is the sky blue? Answer: ", "yes"),
        ("Question: is the sky blue?\nAnswer:\n", "Yes, it is."),
        ("The cat sat on the", " mat and purred quietly for a while."),
        ("", "Hello world"),
        ("A long story. " * 30, " The end of the story is near, and nobody knows it yet."),
    ]


def _greedy_requests(model, tok) -> list[tuple[str, str]]:
    """Continuations the model itself would write (its 2-token greedy continuation, where the
    text re-encodes to the same tokens), so that some greedy flags are True."""
    out = []
    for context in ("Hello", "Question: is the sky blue? Answer:", "The cat sat on the", "Premise:"):
        ids = tok(context)["input_ids"]
        seq = list(ids)
        with torch.no_grad():
            for _ in range(2):
                seq.append(int(model(torch.tensor([seq])).logits[0, -1].argmax()))
        text = tok.decode(seq[len(ids):])
        if tok(context + text)["input_ids"][len(ids):] == seq[len(ids):]:
            out.append((context, text))
    assert out, "no greedy continuation re-encodes to itself"
    return out


def _reference(model, tok, context: str, cont: str, limit: int, bos: bool) -> tuple[float, bool]:
    """The lm-eval rule, by hand (for non-empty contexts)."""
    spaces = len(context) - len(context.rstrip())
    if spaces:
        context, cont = context[:-spaces], context[-spaces:] + cont
    pre = [tok.bos_token_id] if bos else []
    ctx = pre + tok(context, add_special_tokens=False)["input_ids"]
    cont_ids = (pre + tok(context + cont, add_special_tokens=False)["input_ids"])[len(ctx):]
    fed = (ctx + cont_ids)[-(limit + 1):][:-1]
    assert len(fed) == min(limit, len(ctx) + len(cont_ids) - 1)
    with torch.no_grad():
        logp = torch.log_softmax(model(torch.tensor([fed])).logits[0].float(), -1)
    rows = logp[len(fed) - len(cont_ids):]
    target = torch.tensor(cont_ids)
    return float(rows.gather(1, target[:, None]).sum()), bool((rows.argmax(-1) == target).all())


@pytest.fixture(scope="module")
def lms64(lms):
    """The same models in float64: batching and padding then change nothing at 1e-5."""
    return {name: (copy.deepcopy(model).double(), tok) for name, (model, tok) in lms.items()}


@pytest.mark.parametrize("name,add_bos", [("llama3_1", "auto"), ("llama3_1", False), ("llama3_1", True),
                                          ("qwen3", "auto"), ("qwen3", False),
                                          ("tunesmith_bpe", "auto"), ("tunesmith_bpe", True)])
def test_matches_the_lm_eval_rule_by_hand(lms64, name, add_bos):
    model, tok = lms64[name]
    bos = ADDS_BOS[name] if add_bos == "auto" else add_bos
    assert (tok("a")["input_ids"][:1] == [tok.bos_token_id]) == ADDS_BOS[name]  # the premise
    requests = [r for r in _requests() + _greedy_requests(model, tok) if r[0]]
    widths = []
    hook = model.register_forward_pre_hook(
        lambda _, args, kw: widths.append((kw["input_ids"] if "input_ids" in kw else args[0]).shape[1]),
        with_kwargs=True)
    try:
        for limit in (SHORT, 512) if add_bos == "auto" else (SHORT,):
            widths.clear()
            got = fewshot.loglikelihood_greedy(model, tok, requests, batch_size=4, max_length=limit,
                                               add_bos=add_bos)
            fed = max(widths)
            want = [_reference(model, tok, c, x, limit, bos) for c, x in requests]
            assert [g[0] for g in got] == pytest.approx([w[0] for w in want], abs=1e-5)
            assert [g[1] for g in got] == [w[1] for w in want]
            if limit == SHORT:
                assert fed == SHORT  # the model sees max_length tokens, not one fewer
    finally:
        hook.remove()
    plain = fewshot.loglikelihood(model, tok, requests[:3], batch_size=4, max_length=limit, add_bos=add_bos)
    assert plain == pytest.approx([g[0] for g in got[:3]], abs=1e-5)


def test_refuses_a_forced_bos_without_one_and_a_continuation_over_max_length(lms):
    model, tok = lms["qwen3"]
    with pytest.raises(UserError, match="no BOS token"):
        fewshot.loglikelihood(model, tok, [("Hi", " there")], add_bos=True)
    with pytest.raises(UserError, match="continuation of 5 tokens does not fit max_length 4"):  # lm-eval asserts
        fewshot.loglikelihood(model, tok, [("Hi", " one two three four five")], max_length=4)


@pytest.mark.parametrize("name", list(ADDS_BOS))
@pytest.mark.parametrize("max_length", [SHORT, None])
def test_agrees_with_lm_eval_hflm(lms, name, max_length):
    pytest.importorskip("lm_eval")
    from lm_eval.api.instance import Instance
    from lm_eval.models.huggingface import HFLM

    model, tok = lms[name]
    requests = _requests(k=1 if max_length == SHORT else 0) + _greedy_requests(model, tok)
    lm = HFLM(pretrained=model, tokenizer=tok, batch_size=4, max_length=max_length, device="cpu")
    theirs = lm.loglikelihood([Instance("loglikelihood", {}, r, i) for i, r in enumerate(requests)],
                              disable_tqdm=True)
    ours = fewshot.loglikelihood_greedy(model, tok, requests, batch_size=4, max_length=max_length)
    assert [o[0] for o in ours] == pytest.approx([t[0] for t in theirs], abs=1e-4)
    assert [o[1] for o in ours] == [t[1] for t in theirs]
    assert any(t[1] for t in theirs) and not all(t[1] for t in theirs)
