"""The typed config base every stage uses.

A stage's config is a pydantic model made of `Section`s. The same object is filled by a
YAML recipe, by dotted CLI overrides (`--train.lr 3e-4`) and by the Python API; field
defaults are the only defaults. Unknown keys are an error that names the key and
suggests the closest valid one.
"""
from __future__ import annotations

import difflib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.fields import FieldInfo

from .errors import UserError

C = TypeVar("C", bound="Section")


class Section(BaseModel):
    """Base of every config block: strict about unknown keys, validated on assignment."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True,
                              protected_namespaces=())


def _suggest(name: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.5)
    return f'did you mean "{close[0]}"?' if close else f"valid keys: {', '.join(sorted(choices))}"


def _section_at(cls: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The Section class found by walking `loc` (field names) from `cls`."""
    current: Any = cls
    for part in loc:
        field = current.model_fields.get(part) if isinstance(part, str) else None
        if field is None:
            return None
        ann = field.annotation
        candidates = [ann, *getattr(ann, "__args__", ())]
        nxt = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if nxt is None:
            return None
        current = nxt
    return current


def format_validation_error(cls: type[BaseModel], err: ValidationError, source: str) -> UserError:
    """Turn pydantic's multi-line report into one UserError about the first problem."""
    first = err.errors()[0]
    loc = tuple(first["loc"])
    key = ".".join(str(p) for p in loc)
    if first["type"] == "extra_forbidden":
        parent = _section_at(cls, loc[:-1])
        choices = list(parent.model_fields) if parent else []
        return UserError(f'unknown config key "{key}"; {_suggest(str(loc[-1]), choices)}', file=source)
    got = first.get("input")
    got_text = "" if isinstance(got, dict) else f" (got {got!r})"
    msg = first["msg"].removeprefix("Value error, ")
    return UserError(f'config key "{key}": {msg}{got_text}', file=source)


def parse_overrides(args: list[str]) -> dict[str, Any]:
    """`["--train.lr", "3e-4", "--model.size=small"]` -> `{"train": {"lr": 3e-4}, "model": {...}}`.
    Values are read as YAML scalars/lists (`[a, b]`, `true`, `null`)."""
    out: dict[str, Any] = {}
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or len(arg) <= 2:
            raise UserError(f'unexpected argument "{arg}"', fix="overrides look like --section.key VALUE")
        key, eq, value = arg[2:].partition("=")
        if not eq:
            if i + 1 >= len(args) or args[i + 1].startswith("--"):
                raise UserError(f'override "--{key}" has no value', fix=f"write --{key} VALUE")
            value = args[i + 1]
            i += 1
        i += 1
        _set_dotted(out, key.replace("-", "_"), read_value(value))
    return out


def read_value(text: str) -> Any:
    """A flag's value read as a YAML scalar or list (`3e-4`, `true`, `[a, b]`, `null`); text that is
    not valid YAML stays text."""
    try:
        return yaml.safe_load(text) if text != "" else ""
    except yaml.YAMLError:
        return text


def lookup(config: BaseModel, dotted: str) -> Any:
    """The value at a dotted key (`"train.lr"`) of a config object; None where a part is missing."""
    value: Any = config
    for part in dotted.split("."):
        value = getattr(value, part, None)
    return value


def nest(flat: dict[str, Any]) -> dict[str, Any]:
    """`{"train.lr": 1e-3}` -> `{"train": {"lr": 1e-3}}`."""
    out: dict[str, Any] = {}
    for key, value in flat.items():
        _set_dotted(out, key, value)
    return out


def _set_dotted(tree: dict, dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = tree.setdefault(p, {})
        if not isinstance(node, dict):
            raise UserError(f'override "{dotted}" conflicts with a value given for "{p}"')
        tree = node
    tree[parts[-1]] = value


def deep_merge(base: dict, over: dict) -> dict:
    out = dict(base)
    for k, v in over.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | os.PathLike) -> dict:
    """Read a recipe with the safe loader; a clear error for a missing file, bad YAML, an empty
    recipe (0 bytes or only comments: never silently all defaults) or one that is not a mapping."""
    p = Path(path)
    if not p.is_file():
        raise UserError("recipe file not found", file=p, fix="check the path")
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise UserError(f"recipe is not UTF-8 text (byte {e.start})", file=p) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark else None
        problem = getattr(e, "problem", None) or "invalid YAML"
        raise UserError(f"invalid YAML: {problem}", file=p, line=line) from None
    if data is None or data == {}:     # 0 bytes, only comments/whitespace, or `{}`: never all defaults by accident
        raise UserError("the recipe is empty; write at least one section, e.g. `tunesmith init <stage>`", file=p)
    if not isinstance(data, dict):
        raise UserError(f"a recipe must be a mapping of sections (e.g. `train: {{lr: 3e-4}}`), "
                        f"got a YAML {_yaml_kind(data)}", file=p,
                        fix="write sections as `name:` lines, e.g. `tunesmith init <stage>`")
    return data


def _yaml_kind(value: Any) -> str:
    """What a parsed YAML document is, in YAML's words (list, string, number, ...)."""
    if isinstance(value, list):
        return "list"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    return type(value).__name__


def with_stage_defaults(cls: type[BaseModel], data: dict) -> dict:
    """Merge the user's section dicts over the stage's own section defaults.

    A stage declares its defaults as `train: TrainSection = Field(default_factory=lambda:
    TrainSection(lr=3e-3))`; without this, giving any `train` key would rebuild the section
    from TrainSection's generic defaults and silently drop the stage's lr."""
    out = dict(data)
    for name, field in cls.model_fields.items():
        value = out.get(name)
        sub = field.annotation
        if not (isinstance(value, dict) and isinstance(sub, type) and issubclass(sub, BaseModel)):
            continue
        value = with_stage_defaults(sub, value)
        if field.default_factory is not None:
            default = field.default_factory()
            if isinstance(default, BaseModel):
                value = deep_merge(default.model_dump(exclude_unset=True), value)
        out[name] = value
    return out


# keys that moved: old dotted key -> new one (a recipe written before keeps working)
MOVED_KEYS = {"adapter.gradient_checkpointing": "train.gradient_checkpointing"}


def move_keys(cls: type[BaseModel], data: dict) -> dict:
    """`data` with each moved key under its new name, where `cls` has the new key's section and the
    new key is not also given."""
    out = dict(data)
    for old, new in MOVED_KEYS.items():
        (old_sec, old_key), (new_sec, new_key) = old.split("."), new.split(".")
        section = out.get(old_sec)
        if not (isinstance(section, dict) and old_key in section and new_sec in cls.model_fields):
            continue
        out[old_sec] = {k: v for k, v in section.items() if k != old_key}
        target = dict(out.get(new_sec) or {})
        target.setdefault(new_key, section[old_key])
        out[new_sec] = target
    return out


def build(cls: type[C], data: dict | None = None, source: str = "config") -> C:
    try:
        return cls.model_validate(with_stage_defaults(cls, move_keys(cls, data or {})))
    except ValidationError as e:
        raise format_validation_error(cls, e, source) from None


def load_config(cls: type[C], recipe: str | os.PathLike | None = None,
                overrides: list[str] | dict | None = None, section: str | None = None) -> C:
    """Recipe (YAML) then overrides (dotted flags or a nested dict), validated into `cls`.
    `section` picks one stage's block out of a multi-stage recipe when present."""
    data: dict = {}
    source = "config"
    if recipe is not None:
        data = read_yaml(recipe)
        source = str(recipe)
        if section and isinstance(data.get(section), dict):
            data = data[section]
    if overrides:
        over = parse_overrides(overrides) if isinstance(overrides, list) else overrides
        data = deep_merge(data, over)
        if recipe is None:
            source = "command-line flags"
    return build(cls, data, source)


def coerce(cls: type[C], config: C | dict | None, **kwargs: Any) -> C:
    """What the Python API accepts: a config object, a nested dict, a YAML recipe path, or
    keyword sections (merged over it)."""
    if config is None:
        config = {}
    if isinstance(config, (str, os.PathLike)):
        return build(cls, deep_merge(read_yaml(config), kwargs), str(config))
    if isinstance(config, cls):
        return build(cls, deep_merge(config.model_dump(exclude_unset=True), kwargs)) if kwargs else config
    if isinstance(config, BaseModel):
        config = config.model_dump()
    if not isinstance(config, dict):
        raise UserError(f"expected a {cls.__name__} or a dict, got {type(config).__name__}")
    return build(cls, deep_merge(config, kwargs))


class _Required:
    def __repr__(self) -> str:
        return "required"


REQUIRED = _Required()  # the default of a key the user must give


@dataclass(frozen=True)
class ConfigKey:
    """One key of a config class: its dotted name, the default the stage really uses, its help."""

    key: str                # "train.lr"
    default: Any            # REQUIRED when the user must give it; None for a section
    help: str
    annotation: Any
    section: bool = False   # a block of keys (they follow it), not a value

    @property
    def depth(self) -> int:
        return self.key.count(".")


def _block(field: FieldInfo) -> type[BaseModel] | None:
    """The Section class of a field that is a block of keys (not a list of them, not optional)."""
    ann = field.annotation
    return ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None


def config_keys(cls: type[BaseModel], defaults: BaseModel | None = None, prefix: str = "") -> list[ConfigKey]:
    """Every key of `cls` in declaration order, each block followed by its keys, with the defaults the
    stage really uses: a block declared `Field(default_factory=lambda: TrainSection(lr=3e-3))` reports
    lr 3e-3, not TrainSection's own. `--help`, `tunesmith init` and CLI flags are generated from this."""
    rows = []
    for name, field in cls.model_fields.items():
        if defaults is not None:
            default = getattr(defaults, name)
        else:
            default = REQUIRED if field.is_required() else field.get_default(call_default_factory=True)
        block = _block(field)
        if block is None:
            rows.append(ConfigKey(prefix + name, default, field.description or "", field.annotation))
            continue
        rows.append(ConfigKey(prefix + name, None, field.description or "", field.annotation, section=True))
        rows += config_keys(block, default if isinstance(default, BaseModel) else None, f"{prefix}{name}.")
    return rows


def describe_fields(cls: type[BaseModel]) -> list[tuple[str, str, str]]:
    """(flag, default, help) for every leaf key, with the stage's defaults: the CLI's --help."""
    return [(f"--{k.key}", repr(k.default), k.help) for k in config_keys(cls) if not k.section]
