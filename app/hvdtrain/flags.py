"""Every flag is declared once, on a config dataclass field: its default, its spellings, its help.

``flag()`` puts the CLI spellings and help text into a field's metadata. ``parameters()`` turns the
fields of a config (nested groups included) into typer options, so the CLI cannot drift from the
config; ``build()`` turns the parsed values back into that config, by keyword.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from pathlib import PurePath
from typing import Any

import typer

REQUIRED = dataclasses.MISSING  # a flag the user must give


def flag(default: Any = REQUIRED, *names: str, help: str, metavar: str | None = None,
         choices: tuple | None = None, aliases: dict | None = None, low: float | None = None,
         high: float | None = None, open_low: bool = False, open_high: bool = False):
    """A config field that is also a CLI option (``names``: every accepted spelling), with the
    values it takes: ``choices`` (``aliases``: older spellings, stored as the choice they name), or
    bounds ``low``/``high`` (closed unless ``open_*``). A ``Validated`` config checks them when it
    is built; None (an unset optional flag) always passes."""
    meta = {"flags": names, "help": help, "metavar": metavar, "choices": choices, "aliases": aliases or {},
            "bounds": (low, high, open_low, open_high)}
    if isinstance(default, list | dict):
        raise TypeError("mutable defaults need a factory")
    return dataclasses.field(default=default, metadata=meta)


def problem(f: dataclasses.Field, value) -> str | None:
    """Why ``value`` is not one that field ``f`` declares, naming the flag; None when it is."""
    if value is None or "flags" not in f.metadata:
        return None
    name = f.metadata["flags"][0].split("/")[0]
    choices, (low, high, open_low, open_high) = f.metadata["choices"], f.metadata["bounds"]
    if choices is not None and value not in choices:
        return f"{name} {value}: choose one of {', '.join(map(str, choices))}"
    below = low is not None and (value <= low if open_low else value < low)
    above = high is not None and (value >= high if open_high else value > high)
    if not (below or above):
        return None
    if high is not None:
        left, right = "(" if open_low else "[", ")" if open_high else "]"
        return f"{name} {value} must be in {left}{low:g}, {high:g}{right}"
    if open_low:
        return f"{name} {value} must be positive" if low == 0 else f"{name} {value} must be above {low:g}"
    return f"{name} {value} must be 0 or more" if low == 0 else f"{name} {value} must be at least {low:g}"


class Validated:
    """Base of the config dataclasses: building one checks every flag's declared choices and
    bounds, so no entry point can forget to (``check()`` keeps the rules that span flags)."""

    def __post_init__(self):
        from hvdtrain.errors import ConfigError

        for f in dataclasses.fields(self):
            aliases = f.metadata.get("aliases")
            if aliases and getattr(self, f.name) in aliases:
                setattr(self, f.name, aliases[getattr(self, f.name)])
            if why := problem(f, getattr(self, f.name)):
                raise ConfigError(why)

    def check(self) -> None:
        """The rules that span several flags (none unless a config says so)."""


def _fields(cls) -> list[tuple[dataclasses.Field, Any]]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind):
            out += _fields(kind)
        elif "flags" in f.metadata:
            out.append((f, kind))
    return out


def parameters(*classes) -> list[inspect.Parameter]:
    """typer options for every flagged field of ``classes`` (and of their nested groups)."""
    params, seen = [], set()
    for cls in classes:
        for f, kind in _fields(cls):
            if f.name in seen:
                continue
            seen.add(f.name)
            default = ... if f.default is REQUIRED else f.default
            opt = typer.Option(default, *f.metadata["flags"], help=f.metadata["help"],
                               metavar=f.metadata["metavar"], show_default=default is not ...)
            params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=opt,
                                            annotation=kind))
    return params


def values(config) -> dict[str, Any]:
    """Every flag of a config instance (nested groups included) as ``{--spelling: value}``, in
    JSON's types: what ``run_config.json`` and each checkpoint keep of how a run was made."""
    out = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            out.update(values(value))
        elif "flags" in f.metadata:
            out[f.metadata["flags"][0].split("/")[0]] = str(value) if isinstance(value, PurePath) else value
    return out


def changed(config) -> dict[str, Any]:
    """The flags of ``config`` whose value is not their declared default (required ones included)."""
    defaults = {f.metadata["flags"][0].split("/")[0]: f.default for f, _ in _fields(type(config))}
    return {k: v for k, v in values(config).items() if v != defaults.get(k)}


def difference(before: dict[str, Any], now: dict[str, Any]) -> list[str]:
    """``--flag old -> new`` for each flag whose value differs between two ``values()``."""
    return [f"{k} {before.get(k)} -> {now.get(k)}" for k in sorted(set(before) | set(now))
            if before.get(k) != now.get(k)]


def build(cls, values: dict):
    """``cls`` from parsed option values, by keyword; nested groups are built the same way."""
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = build(hints[f.name], values)
        elif f.name in values:
            kwargs[f.name] = values[f.name]
    return cls(**kwargs)


def command(app: typer.Typer, name: str, *classes, extra: list[inspect.Parameter] = ()):
    """Register ``fn(**values)`` as ``hvdtrain NAME`` with the options of ``classes`` + ``extra``.

    ``fn``'s own docstring is the command's help."""
    def register(fn):
        params = [*parameters(*classes), *extra]
        params.sort(key=lambda p: p.kind)  # positional arguments first, as Python requires

        def cmd(**values):
            return fn(**values)

        cmd.__signature__ = inspect.Signature(params)
        cmd.__annotations__ = {p.name: p.annotation for p in params}
        cmd.__doc__ = fn.__doc__
        cmd.__name__ = fn.__name__
        app.command(name)(cmd)
        return fn
    return register


def arg(name: str, kind, default: Any = ..., **kw) -> inspect.Parameter:
    """An extra CLI-only parameter (a positional argument when ``default`` is ``...`` and
    ``kw`` holds ``argument=True``)."""
    is_argument = kw.pop("argument", False)
    make = typer.Argument if is_argument else typer.Option
    names = kw.pop("names", ())
    value = make(default, *names, **kw)
    kind_ = inspect.Parameter.POSITIONAL_OR_KEYWORD if is_argument else inspect.Parameter.KEYWORD_ONLY
    return inspect.Parameter(name, kind_, default=value, annotation=kind)
