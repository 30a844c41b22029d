"""The pretraining stage's typed config: the one place its defaults live."""
from __future__ import annotations

from typing import Literal

from pydantic import Field

from ..core.config import Section
from ..core.train_config import RunSection, TrainSection
from ..hub.config import PushConfig


class ModelSection(Section):
    family: Literal["llama", "gpt2", "neox"] = Field("llama", description="architecture family")
    size: Literal["nano", "small", "base", "1b"] = Field("nano", description="named size preset")
    from_pretrained: str | None = Field(
        None, description="continue pretraining this local HF causal-LM folder instead of building one")
    layers: int | None = Field(None, description="override: number of layers")
    hidden: int | None = Field(None, description="override: hidden size")
    heads: int | None = Field(None, description="override: attention heads")
    kv_heads: int | None = Field(None, description="override: key/value heads (llama family)")
    intermediate: int | None = Field(None, description="override: MLP inner size")
    vocab: int | None = Field(None, description="override: model vocabulary (default: the tokenizer's size)")
    context: int | None = Field(None, description="override: maximum positions")
    init: Literal["normal", "gpt2_scaled", "small_init"] = Field(
        "gpt2_scaled", description="weight init: normal(std) | gpt2_scaled (residual outputs / sqrt(2L)) | "
                                   "small_init (GPT-NeoX: sqrt(2/5d), outputs 2/(L sqrt d))")
    init_std: float = Field(0.02, gt=0, description="std of the normal / gpt2_scaled schemes")
    trust_remote_code: bool = Field(False, description="allow custom model code from from_pretrained folders")
    allow_pickle: bool = Field(False, description="allow pickle (.bin) weights, which can run code when loaded")


class TokenizerSection(Section):
    path: str | None = Field(None, description="reuse this tokenizer folder instead of training one")
    vocab_size: int = Field(2048, ge=300, description="BPE vocabulary size when training a tokenizer")
    min_frequency: int = Field(2, ge=1, description="minimum pair frequency for a BPE merge")
    train_documents: int = Field(200_000, ge=1, description="at most this many documents train the tokenizer")


class DataSection(Section):
    train: list[str] | str | None = Field(
        None, description="text files, folders, JSONL/JSON/Parquet files, save_to_disk folders or Hub ids; "
                          "default: the corpus shipped with tunesmith")
    text_field: str = Field("text", description="the text column of JSONL/JSON/Parquet/datasets input")
    block_size: int = Field(128, ge=8, description="tokens per packed training block")
    validation_fraction: float = Field(0.05, ge=0, lt=1, description="share of blocks held out")
    validation_blocks: int = Field(16, ge=1, description="streaming: held-out blocks taken from the stream's start")
    split_text: Literal["paragraph", "line", "file"] = Field(
        "paragraph", description="how plain-text files split into documents (paragraph: at blank lines)")
    streaming: bool = Field(False, description="stream documents (corpora larger than memory)")
    max_documents: int | None = Field(None, ge=1, description="use at most this many documents")


class ObjectiveSection(Section):
    type: Literal["next_token", "multi_token"] = Field("next_token", description="training objective")
    n_heads: int = Field(4, ge=2, le=16, description="multi_token: number of output heads (predict t+1..t+n)")


class CurriculumSection(Section):
    enabled: bool = Field(False, description="order/sample training data from easy to hard")
    score: Literal["length", "perplexity"] = Field("length", description="difficulty score of a document")
    reference_model: str | None = Field(None, description="perplexity score: local causal-LM folder")
    pacing: Literal["linear", "root", "step"] = Field("root", description="competence schedule c(t)")
    start_fraction: float = Field(0.2, gt=0, le=1, description="share of the easiest data used at step 0")
    full_at: float = Field(0.5, gt=0, le=1, description="fraction of training after which all data is used")


class PretrainConfig(Section):
    model: ModelSection = Field(default_factory=ModelSection)
    tokenizer: TokenizerSection = Field(default_factory=TokenizerSection)
    data: DataSection = Field(default_factory=DataSection)
    objective: ObjectiveSection = Field(default_factory=ObjectiveSection)
    curriculum: CurriculumSection = Field(default_factory=CurriculumSection)
    train: TrainSection = Field(default_factory=lambda: TrainSection(lr=3e-3, max_steps=400))
    run: RunSection = Field(default_factory=RunSection)
    push_to_hub: PushConfig | None = Field(None, description="push the model to the Hub at the end: {repo: user/name, ...}")
