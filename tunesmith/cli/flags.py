"""Command-line flags generated from the typed configs.

Every key of a command's config is a flag, `--section.key VALUE` (also spelled with dashes,
`--section.max-steps`); a true/false key is also a bare switch (`--private`). Values are read
as YAML (`3e-4`, `true`, `[a, b]`); a list key also takes `a,b`. Flags are generated when their
command is parsed, so `tunesmith --help` imports no stage module. Keys the parser does not know
(e.g. `--push_to_hub.repo`) still reach the config, which names the closest valid key when a key
is wrong.
"""
from __future__ import annotations

import argparse
import re
import sys
import types
from typing import Any, Callable, Literal, Union, get_args, get_origin

from ..core.config import config_keys, deep_merge, describe_fields, nest, parse_overrides, read_value
from ..core.errors import UserError

BOOL_WORDS = {"true", "false", "yes", "no", "on", "off", "1", "0", "null", "~"}
_NO_VALUE = re.compile(r"argument (--[^/:\s]+)[^:]*: expected one argument")


class ConfigFlag(argparse.Action):
    """`--section.key VALUE` -> namespace.config["section.key"] = VALUE (read as YAML later)."""

    def __init__(self, option_strings, dest, key: str, is_list: bool = False, **kwargs):
        super().__init__(option_strings, "config", default=argparse.SUPPRESS, **kwargs)
        self.key, self.is_list = key, is_list

    def __call__(self, parser, namespace, values, option_string=None):
        value = self.const if self.nargs == 0 else values
        if self.is_list and isinstance(value, str) and not value.strip().startswith("[") \
                and value.strip() not in ("null", "~"):
            value = f"[{value}]"
        namespace.config = {**getattr(namespace, "config", {}), self.key: value}


def _bool_words(annotation: Any) -> frozenset[str] | None:
    """The words a switch-like key takes as its value (a bare flag means true), or None for a key
    that is not a switch: `bool`, `bool | None`, and `bool | Literal["auto"]` (its words too)."""
    if annotation is bool:
        return frozenset(BOOL_WORDS)
    options = set(get_args(annotation)) if get_origin(annotation) in (Union, types.UnionType) else set()
    if bool not in options:
        return None
    words = set(BOOL_WORDS)
    for o in options - {bool, type(None)}:
        if get_origin(o) is not Literal:
            return None
        words.update(str(w).lower() for w in get_args(o))
    return frozenset(words)


def _is_list(annotation: Any) -> bool:
    options = get_args(annotation) if get_origin(annotation) in (Union, types.UnionType) else (annotation,)
    return str not in options and any(get_origin(o) is list for o in options)


class Parser(argparse.ArgumentParser):
    """One line and exit 2 on bad arguments (a UserError); a command's config keys become flags
    when the command is parsed; an optional RECIPE.yaml right after the command's positionals."""

    configs: Callable[[str | None, list[str]], list[type]] | None = None  # (recipe, args) -> config classes
    recipe_after: int | None = None  # the recipe comes after this many positionals (None: no recipe)

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("allow_abbrev", False)  # --model must not abbreviate --model.family
        super().__init__(*args, **kwargs)
        self.bool_flags: dict[str, frozenset[str]] = {}  # a switch's flag -> the values it takes

    def error(self, message: str):  # argparse prints usage + message; we print one line
        missing = _NO_VALUE.search(message)
        if missing:
            flag = missing.group(1)
            raise UserError(f'override "{flag}" has no value', fix=f"write {flag} VALUE")
        raise UserError(f"{self.prog}: {message} (see --help)")

    def parse_known_args(self, args=None, namespace=None):
        args = list(sys.argv[1:] if args is None else args)
        recipe, n = None, self.recipe_after
        if n is not None and len(args) > n and not any(a.startswith("-") for a in args[:n + 1]):
            recipe = args.pop(n)
        if self.configs is not None:
            classes, self.configs = self.configs(recipe, args), None
            for cls in classes:
                add_config_flags(self, cls)
            self.epilog = "\n\n".join(config_help(cls) for cls in classes)
        args = [f"{a}=true" if a in self.bool_flags and (i + 1 == len(args) or args[i + 1].lower() not in self.bool_flags[a])
                else a for i, a in enumerate(args)]
        parsed, extra = super().parse_known_args(args, namespace)
        if n is not None:
            parsed.recipe = recipe
        return parsed, extra


def _spellings(parser: argparse.ArgumentParser, key: str) -> list[str]:
    names = dict.fromkeys([f"--{key}", f"--{key.replace('_', '-')}"])
    return [n for n in names if n not in parser._option_string_actions]


def add_config_flags(parser: Parser, cls: type) -> None:
    """A flag for every key of `cls` (spellings taken already, e.g. --json, keep their meaning)."""
    for k in config_keys(cls):
        names = [] if k.section else _spellings(parser, k.key)
        if names:
            parser.add_argument(*names, action=ConfigFlag, key=k.key, is_list=_is_list(k.annotation),
                                metavar="VALUE", help=argparse.SUPPRESS)
            words = _bool_words(k.annotation)
            if words is not None:
                parser.bool_flags.update(dict.fromkeys(names, words))


def add_alias(parser: Parser, flag: str, key: str, help: str, value: str | None = None, metavar: str = "VALUE",
              is_list: bool = False) -> None:
    """A documented short spelling of a config key (`--model` for model.path); with `value`, a switch
    that sets the key to it (`--hub` for data.source hub)."""
    if value is None:
        parser.add_argument(flag, action=ConfigFlag, key=key, help=f"{help} (= --{key})", metavar=metavar,
                            is_list=is_list)
    else:
        parser.add_argument(flag, action=ConfigFlag, key=key, nargs=0, const=value,
                            help=f"{help} (= --{key} {value})")


def config_help(cls: type) -> str:
    """The --help epilog: every key with the default the stage uses."""
    rows = describe_fields(cls)
    width = max(len(flag) for flag, _, _ in rows)
    lines = [f"  {flag:<{width}}  {help_} [default: {default}]" for flag, default, help_ in rows]
    return (f"{cls.__name__} keys (YAML `section: {{key: value}}` or flags `--section.key VALUE`):\n"
            + "\n".join(lines))


def overrides(args: argparse.Namespace, extra: list[str]) -> dict[str, Any]:
    """The config flags given (known ones, then any others) as a nested dict."""
    known = nest({key: read_value(value) for key, value in getattr(args, "config", {}).items()})
    return deep_merge(known, parse_overrides(extra)) if extra else known


def named_values(specs: list[str] | None, flag: str, form: str, fix: str, reserved: str | None = None) -> dict[str, str]:
    """Repeated `--flag NAME=VALUE` options as {name: value}; a malformed spec, a name given twice
    or one starting with `reserved` is a UserError naming the flag."""
    out: dict[str, str] = {}
    for spec in specs or []:
        name, sep, value = spec.partition("=")
        if not sep or not name or not value:
            raise UserError(f'{flag} "{spec}" is not {form}', fix=fix)
        if name in out or (reserved and name.startswith(reserved)):
            raise UserError(f'{flag} name "{name}" is given twice'
                            + (f' or starts with "{reserved}"' if reserved else ""))
        out[name] = value
    return out


def no_extra(extra: list[str], usage: str) -> None:
    if extra:
        raise UserError(f'unexpected argument "{extra[0]}"', fix=usage)


def common() -> argparse.ArgumentParser:
    """Flags every command takes, before or after the command name."""
    p = argparse.ArgumentParser(add_help=False)
    p.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks")
    p.add_argument("--quiet", action="store_true", default=argparse.SUPPRESS, help="no progress bars")
    p.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print the result as JSON")
    return p


def command(sub, name: str, help: str, *, configs=None, recipe_after: int | None = None, usage: str | None = None,
            description: str | None = None) -> Parser:
    """A subcommand whose config keys (`configs(recipe, args) -> classes`) become flags when it is parsed."""
    p = sub.add_parser(name, help=help, description=description or help, parents=[common()],
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.configs, p.recipe_after = configs, recipe_after
    if usage:
        p.usage = usage
    return p
