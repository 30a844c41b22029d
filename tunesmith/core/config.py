"""The typed config base every stage uses.

A stage's config is a pydantic model made of `Section`s. The same object is filled by a
YAML recipe, by dotted CLI overrides (`--train.lr 3e-4`) and by the Python API; field
defaults are the only defaults. Unknown keys are an error that names the key and
suggests the closest valid one.
"""
from __future__ import annotations

import difflib
import os
from pathlib import Path
from typing import Any, TypeVar, get_origin

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

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
        try:
            parsed = yaml.safe_load(value) if value != "" else ""
        except yaml.YAMLError:
            parsed = value
        _set_dotted(out, key.replace("-", "_"), parsed)
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
    """Read a recipe with the safe loader; a clear error for a missing file or bad YAML."""
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
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError("a recipe must be a mapping of sections (e.g. `train: {lr: 3e-4}`)", file=p)
    return data


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


def build(cls: type[C], data: dict | None = None, source: str = "config") -> C:
    try:
        return cls.model_validate(with_stage_defaults(cls, data or {}))
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


def describe_fields(cls: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    """(flag, default, help) for every leaf field: the CLI's --help is generated from this."""
    rows = []
    for name, field in cls.model_fields.items():
        sub = _section_at(cls, (name,))
        if get_origin(field.annotation) in (list, dict, tuple):
            sub = None  # a list of sections is given whole: --inputs '[{path: a.jsonl}]'
        if sub is not None and field.default is None and field.default_factory is None:
            sub = None
        if sub is not None:
            rows += describe_fields(sub, f"{prefix}{name}.")
        else:
            default = "required" if field.is_required() else repr(field.get_default(call_default_factory=True))
            rows.append((f"--{prefix}{name}", default, field.description or ""))
    return rows
