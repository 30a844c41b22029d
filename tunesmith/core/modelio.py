"""Loading model folders and tokenizers: one place each. Models safely (safetensors only, no
remote code unless asked); tokenizers with one clear error and a pad token.

Wherever a model is named, a Hugging Face Hub repo id works too (`resolve_model`): an existing
local path is used as it is; otherwise `owner/name` (optionally `owner/name@revision`, a branch, tag
or commit) is fetched into the Hugging Face cache (safetensors, config and tokenizer files only;
never pickle weights) with the user's token (HF_TOKEN or `hf auth login`), or found there when
HF_HUB_OFFLINE=1. Each repo resolved in this process is recorded in `RESOLVED` (repo -> revision
asked and the commit it resolved to), which environment.json records.

    resolve_model("Qwen/Qwen3-0.6B")            # -> ~/.cache/huggingface/hub/models--Qwen--Qwen3-0.6B/snapshots/<sha>
    resolve_model("Qwen/Qwen3-0.6B@refs/pr/12")  # a branch, tag, PR ref or commit sha
"""
from __future__ import annotations

import functools
import json
import os
import re
from pathlib import Path
from typing import Any

from .errors import UserError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".ckpt")

# --- Hub ids ----------------------------------------------------------------------------------
# what a Hub model download fetches: top-level config, tokenizer, chat template, custom code (run only
# with trust_remote_code) and safetensors weights; never pickle weights, nor subfolders (onnx/, original/)
HUB_TOKENIZER_PATTERNS = ["*.json", "*.model", "*.txt", "*.jinja", "*.tiktoken", "*.py"]
HUB_WEIGHT_PATTERNS = ["*.safetensors"]
HUB_IGNORE_PATTERNS = ["*/*", "consolidated*"]   # subfolders; Mistral's duplicate native-format weights
# repo id (with "@revision" when one was asked) -> {"repo", "revision", "commit"}: every Hub model this
# process resolved, for environment.json
RESOLVED: dict[str, dict[str, str]] = {}
_RESOLVED_PATHS: dict[tuple[str, bool], Path] = {}   # (name as given, weights) -> snapshot folder
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
LOGIN_FIX = "log in with `hf auth login` or set HF_TOKEN"


def parse_hub_id(name: str | os.PathLike) -> tuple[str, str | None] | None:
    """(repo id, revision or None) when `name` reads as a Hub model id, `owner/name` or
    `owner/name@revision`; None for anything else (an absolute or ./ path, a bare name, a path
    with several folders)."""
    text = os.fspath(name)
    repo, at, revision = text.partition("@")
    if repo.count("/") != 1 or repo.startswith(("/", ".", "~")) or "\\" in text or (at and not revision):
        return None
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        return None
    return repo, revision or None


def _hub_error(e: BaseException, spec: str, repo: str, field: str | None, offline: bool) -> UserError:
    """One line for what snapshot_download raised."""
    from huggingface_hub.errors import (GatedRepoError, HfHubHTTPError, IncompleteSnapshotError,
                                        LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError)

    where = f"Hub model {spec}"
    download = f"`hf download {repo}`"
    if isinstance(e, GatedRepoError):
        return UserError(f"{where} is gated and this account has not been granted access", field=field,
                         fix=f"accept its license on https://huggingface.co/{repo}, then {LOGIN_FIX}")
    if isinstance(e, RepositoryNotFoundError):
        return UserError(f"is neither a local folder nor a model repo on the Hub ({spec}), or the repo is private",
                         field=field, fix=f"check the path or the repo id; for a private repo {LOGIN_FIX}")
    if isinstance(e, RevisionNotFoundError):
        return UserError(f"{where}: revision {spec.partition('@')[2] or 'main'} does not exist", field=field,
                         fix="give a branch, tag or commit of the repo after @, e.g. owner/name@main")
    if isinstance(e, LocalEntryNotFoundError):  # offline (or the Hub unreachable) and not fully in the cache
        if offline:
            cached = "only partly" if isinstance(e, IncompleteSnapshotError) else "not"
            return UserError(f"{where} is {cached} in the local Hugging Face cache and HF_HUB_OFFLINE=1", field=field,
                             fix=f"run once online, or download it first: {download}")
        return UserError(f"{where}: the Hub cannot be reached and the model is not in the local cache", field=field,
                         fix=f"check the network (and HF_ENDPOINT), or download it first: {download}")
    if isinstance(e, HfHubHTTPError):
        status = e.response.status_code if e.response is not None else None
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:160]
        if status in (401, 403):
            return UserError(f"{where}: the Hub refused access ({first})", field=field, fix=LOGIN_FIX)
        return UserError(f"{where}: download failed ({first})", field=field, fix=f"retry, or download it first: {download}")
    return UserError(f"{where}: download failed ({_reason(e)})", field=field, fix=f"retry, or download it first: {download}")


def _pickle_only_on_hub(repo: str, commit: str) -> list[str]:
    """The pickle weight files of the repo at `commit` when its tree listing is cached (written by
    every snapshot_download, so known offline too); [] when unknown."""
    from huggingface_hub import get_cached_repo_tree
    from huggingface_hub.errors import CachedRepoTreeNotFoundError

    try:
        files = [f.path for f in get_cached_repo_tree(repo, revision=commit)]
    except (CachedRepoTreeNotFoundError, OSError, ValueError):
        return []
    return [f for f in files if "/" not in f and Path(f).suffix in PICKLE_SUFFIXES]


def _has_safetensors(folder: Path) -> bool:
    return any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").exists()


def resolve_model(name: str | os.PathLike, *, revision: str | None = None, field: str | None = "model.path",
                  weights: bool = True) -> Path:
    """A local folder for `name`: an existing local path as it is; a Hub id (`owner/name`, or
    `owner/name@revision`; `revision` does the same) downloaded into the Hugging Face cache
    (snapshot_download: config, tokenizer and safetensors files only) or, when HF_HUB_OFFLINE=1,
    found there; anything else as given (the caller's check names it). `weights=False` fetches the
    tokenizer and config files only. Problems are one-line UserErrors naming `field` and the id:
    not found, gated, offline and not cached, pickle-only weights. Resolved once per process."""
    p = Path(name)
    if p.exists():
        return p
    parsed = parse_hub_id(name)
    if parsed is None:
        return p
    repo, rev = parsed
    rev = revision or rev
    spec = f"{repo}@{rev}" if rev else repo
    for key in ((spec, weights), (spec, True)):
        if key in _RESOLVED_PATHS and _RESOLVED_PATHS[key].is_dir():
            return _RESOLVED_PATHS[key]
    from huggingface_hub import constants, snapshot_download

    offline = constants.is_offline_mode()
    allow = HUB_TOKENIZER_PATTERNS + (HUB_WEIGHT_PATTERNS if weights else [])
    try:
        folder = Path(snapshot_download(repo, revision=rev, allow_patterns=allow, ignore_patterns=HUB_IGNORE_PATTERNS,
                                        local_files_only=offline))
    except Exception as e:  # huggingface_hub's errors, OSError (disk full), connection errors
        raise _hub_error(e, spec, repo, field, offline) from None
    commit = folder.name
    if weights and not _has_safetensors(folder):
        pickles = _pickle_only_on_hub(repo, commit)
        if pickles:
            raise UserError(f"Hub model {spec} holds only pickle weights ({', '.join(pickles[:3])}), which can run "
                            "code when loaded; tunesmith downloads safetensors only", field=field,
                            fix="use a revision with safetensors weights (often a refs/pr/N conversion: "
                                f"{repo}@refs/pr/N), or download and convert it yourself and give the local "
                                "folder (with model.allow_pickle: true if you trust the source)")
        if offline:
            raise UserError(f"Hub model {spec}: its copy in the local Hugging Face cache holds no safetensors "
                            "weights and HF_HUB_OFFLINE=1", file=folder, field=field,
                            fix=f"run once online, or download it first: `hf download {repo}`")
    RESOLVED[spec] = {"repo": repo, "revision": rev or "main", "commit": commit}
    _RESOLVED_PATHS[(spec, weights)] = folder
    return folder


def hub_source(path: str | os.PathLike | None) -> tuple[str, str] | None:
    """(repo id, commit) when `path` is a Hub model snapshot in the Hugging Face cache
    (`.../models--owner--name/snapshots/<commit>`, what `resolve_model` returns); else None."""
    if path is None:
        return None
    p = Path(path)
    try:
        p = p.resolve()
    except OSError:
        return None
    repo_dir = p.parent.parent.name
    if p.parent.name == "snapshots" and repo_dir.startswith("models--") and _COMMIT.match(p.name):
        repo = repo_dir.removeprefix("models--").replace("--", "/")  # repo ids never hold "--"
        if parse_hub_id(repo):
            return repo, p.name
    return None


def hub_id_of(path: str | os.PathLike | None) -> str | None:
    """The Hub repo id of a cached snapshot folder (`hub_source`), else None: what an adapter trained
    on it records as its base instead of the cache path."""
    source = hub_source(path)
    return source[0] if source else None


def check_model_folder(path: str | os.PathLike, allow_pickle: bool = False, *, field: str | None = None) -> Path:
    """The checked local model folder for `path` (a folder, or a Hub id: `resolve_model`): config.json,
    safetensors weights (pickle only with `allow_pickle`) whose headers read."""
    p = resolve_model(path, field=field)
    if not p.is_dir():
        raise UserError("model folder not found", file=p, field=field,
                        fix="give a local folder written by save_pretrained, or a Hub model id owner/name")
    if not (p / "config.json").exists():
        if (p / "adapter_config.json").exists():  # every stage resolves these first (adapters.chain)
            raise UserError("is an adapter folder, not a model folder", file=p,
                            fix="give it as a stage's model.path (loaded on its recorded base), or merge it "
                                "first: tunesmith merge ADAPTER OUT")
        raise UserError("not a model folder: config.json is missing", file=p)
    has_safe = any(p.glob("*.safetensors")) or (p / "model.safetensors.index.json").exists()
    has_pickle = any(f.suffix in PICKLE_SUFFIXES for f in p.iterdir())
    if not has_safe and has_pickle and not allow_pickle:
        raise UserError("holds only pickle weights (.bin/.pt), which can run code when loaded; refused",
                        file=p, fix="convert to safetensors, or set model.allow_pickle: true (--model.allow_pickle true) if you trust the source")
    if not has_safe and not has_pickle:
        raise UserError("holds no weights (*.safetensors)", file=p)
    for f in _safetensors_files(p):
        check_safetensors(f)
    return p


DAMAGED_FIX = "the file is damaged; re-save or re-download the model"


def _safetensors_files(folder: Path) -> list[Path]:
    """The folder's safetensors files: the shards its index names (each must be there), else
    every *.safetensors file in it."""
    index = folder / "model.safetensors.index.json"
    if not index.exists():
        return sorted(folder.glob("*.safetensors"))
    try:
        shards = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise UserError(f"cannot read the shard index: {str(e).splitlines()[0][:160]}", file=index,
                        fix=DAMAGED_FIX) from None
    for name in shards:
        if not (folder / name).is_file():
            raise UserError(f"shard {name}, named in {index.name}, is missing", file=folder / name,
                            fix="re-save or re-download the model (every shard)")
    return [folder / name for name in shards]


def _reason(e: BaseException) -> str:
    msg = (str(e).splitlines() or [type(e).__name__])[0]
    return msg.removeprefix("Error while deserializing header: ")[:160]


def check_safetensors(path: str | os.PathLike) -> None:
    """Read a safetensors file's header (a few kB, no tensor data): a truncated, overwritten or
    non-safetensors file is refused here, naming it, before anything else loads. A file already
    read unchanged (same size and modification time) is not read again: a stage checks its model
    folder up front and the loaders check it again."""
    try:
        st = os.stat(path)
        reason = _header_error(str(path), st.st_size, st.st_mtime_ns)
    except OSError as e:
        reason = _reason(e)
    if reason is not None:
        raise UserError(f"cannot read the weights: {reason}", file=path, fix=DAMAGED_FIX)


@functools.lru_cache(maxsize=256)
def _header_error(path: str, size: int, mtime_ns: int) -> str | None:
    """Why the header of this version of the file cannot be read (None: it can)."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(path, framework="numpy"):  # "numpy": opening imports no torch
            pass
    except (SafetensorError, OSError) as e:
        return _reason(e)
    return None


def load_model(path: str | os.PathLike, auto_class: Any = None, *, trust_remote_code: bool = False,
               allow_pickle: bool = False, dtype: Any = None, **kwargs: Any):
    """The one safe model loader: `auto_class.from_pretrained` (default AutoModelForCausalLM) on a
    checked local folder (or Hub id, fetched into the cache first), safetensors only unless `allow_pickle`, no custom code unless
    `trust_remote_code`, fp32 unless `dtype` says otherwise. Every model tunesmith loads comes here."""
    import torch
    from safetensors import SafetensorError
    from transformers import AutoModelForCausalLM

    auto_class = auto_class or AutoModelForCausalLM
    p = check_model_folder(path, allow_pickle)
    try:
        return auto_class.from_pretrained(str(p), dtype=dtype or torch.float32, trust_remote_code=trust_remote_code,
                                          use_safetensors=not allow_pickle, **kwargs)
    except SafetensorError as e:  # damaged in a way the header check does not see
        files = _safetensors_files(p)
        raise UserError(f"cannot read the weights: {_reason(e)}", file=files[0] if len(files) == 1 else p,
                        fix=DAMAGED_FIX) from None
    except ValueError as e:
        msg = str(e).splitlines()[0]
        if "trust_remote_code" in msg:
            raise UserError("this model needs custom code to load", file=p,
                            fix="pass --model.trust_remote_code true only if you trust its author") from None
        kind = {"AutoModelForCausalLM": "a causal LM", "AutoModelForSequenceClassification": "a classifier"}
        raise UserError(f"cannot load as {kind.get(auto_class.__name__, 'a model')}: {msg}", file=p) from None


def load_peft(model: Any, folder: str | os.PathLike, *, adapter_name: str = "default", trainable: bool = False,
              allow_pickle: bool = False):
    """The one adapter loader: `PeftModel.from_pretrained(model, folder)` on a checked adapter folder
    (adapter_config.json and safetensors weights, header read first; pickle `adapter_model.bin` only
    with `allow_pickle`). Every adapter tunesmith loads comes here."""
    from peft import PeftModel

    p = Path(folder)
    if not (p / "adapter_config.json").is_file():
        raise UserError("not an adapter folder: adapter_config.json is missing", file=p,
                        fix="pass a folder written by save_adapter or PeftModel.save_pretrained")
    safe = p / "adapter_model.safetensors"
    if safe.is_file():
        check_safetensors(safe)
    elif (p / "adapter_model.bin").is_file() and not allow_pickle:
        raise UserError("holds only pickle adapter weights (adapter_model.bin), which can run code when loaded; "
                        "refused", file=p, fix="re-save it with safetensors, or set model.allow_pickle: true if you "
                                               "trust the source")
    elif not (p / "adapter_model.bin").is_file():
        raise UserError("holds no adapter weights (adapter_model.safetensors)", file=p)
    return PeftModel.from_pretrained(model, str(p), adapter_name=adapter_name, is_trainable=trainable)


def load_causal_lm(path: str | os.PathLike, trust_remote_code: bool = False, allow_pickle: bool = False,
                   dtype=None):
    """AutoModelForCausalLM from a local folder or Hub id (`load_model`)."""
    return load_model(path, trust_remote_code=trust_remote_code, allow_pickle=allow_pickle, dtype=dtype)


def load_tokenizer(path: str | os.PathLike, *, field: str = "model.tokenizer", trust_remote_code: bool = False,
                   need_eos: bool = False, need_pad: bool = False):
    """The one tokenizer loader: a local folder or a Hub id (`resolve_model`, tokenizer files only), one
    clear line when it is not one. A tokenizer without a pad token gets its EOS (else UNK) token as pad. `need_eos` (documents
    are separated by EOS) and `need_pad` (batches are padded) refuse a tokenizer that lacks them."""
    from transformers import AutoTokenizer

    p = resolve_model(path, field=field, weights=False)  # a Hub id: its tokenizer files, from the cache
    try:
        tok = AutoTokenizer.from_pretrained(str(p), trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        if not p.exists():
            raise UserError("tokenizer folder not found", file=p, field=field,
                            fix="point at a folder with tokenizer.json or tokenizer_config.json") from None
        raise UserError(f"cannot load a tokenizer from this folder: {str(e).splitlines()[0][:160]}", file=p,
                        field=field, fix="point at a folder with tokenizer.json or tokenizer_config.json") from None
    if need_eos and tok.eos_token is None:
        raise UserError("tokenizer has no EOS token, needed to separate documents", file=p, field=field)
    if tok.pad_token is None and (tok.eos_token or tok.unk_token):
        tok.pad_token = tok.eos_token or tok.unk_token
    if need_pad and tok.pad_token is None:
        raise UserError("tokenizer has neither a pad nor an EOS token", file=p, field=field,
                        fix="add a pad token to the tokenizer")
    return tok
