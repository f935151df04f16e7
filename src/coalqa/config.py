"""One place for settings: typed config models, YAML loading and CLI overrides.

Each pipeline stage declares its knobs once, as a pydantic model beside the code that
uses them (``coalqa.corpus.CorpusConfig``, ``coalqa.train.TrainConfig``, ...). This
module turns such a model into

* a YAML loader (:func:`load_config`) that rejects unknown keys, naming the file, and
* typer options (:func:`config_options`), one ``--field_name`` flag per field, whose
  defaults are ``None`` so that only what the user typed overrides the file/defaults.

Precedence, lowest to highest: model defaults < YAML file < command-line flags.
"""

from __future__ import annotations

import functools
import inspect
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
import typer
import yaml
from pydantic import BaseModel, ValidationError

from coalqa.errors import CoalqaError
from coalqa.textio import read_text_file

M = TypeVar("M", bound=BaseModel)


class ConfigError(CoalqaError, ValueError):
    """A config file or a flag value is invalid; the message names the file/key and what was expected."""


def read_settings(path: str | Path) -> dict[str, Any]:
    """The mapping of settings in the YAML file ``path`` (empty file: ``{}``), unchecked: the one YAML reader of
    ``--config`` files and of the presets in ``configs/``.

    Raises:
        ConfigError: the file is missing, not valid YAML, or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        loaded = yaml.safe_load(read_text_file(path, "config"))
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from e
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of settings, got {type(loaded).__name__}")
    return loaded


def split_settings(config_file: str | Path | None, first: type[BaseModel], second: type[BaseModel],
                   ignored: tuple[str, ...] = (), what: str = "settings") -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of an optional YAML file (:func:`read_settings`) that may hold keys of two models:
    ``(first's, second's)``; a key of both goes to ``first``; ``ignored`` keys are dropped; ``second``'s are
    validated now (``coalqa demo --config`` with training keys: checked before minutes of work).

    Raises:
        ConfigError: missing/invalid file, a key known to neither model, or invalid values for ``second``
            (``what`` names them).
    """
    if config_file is None:
        return {}, {}
    path = Path(config_file)
    loaded = read_settings(path)
    unknown = sorted(set(loaded) - set(first.model_fields) - set(second.model_fields))
    if unknown:
        raise ConfigError(f"{path}: unknown setting(s) {', '.join(unknown)}: neither a {first.__name__} nor a "
                          f"{second.__name__} field")
    ours = {k: v for k, v in loaded.items() if k in first.model_fields}
    theirs = {k: v for k, v in loaded.items() if k not in first.model_fields and k not in ignored}
    if theirs:
        try:
            second.model_validate(theirs)
        except ValueError as e:
            raise ConfigError(f"{path}: invalid {what}: {e}") from e
    return ours, theirs


def load_config(cls: type[M], config_file: str | Path | None = None, overrides: dict[str, Any] | None = None) -> M:
    """Build a ``cls`` instance from defaults, an optional YAML file and explicit overrides.

    Args:
        cls: the pydantic config model.
        config_file: YAML mapping of field names to values (``None`` for none).
        overrides: field values that win over the file; entries whose value is ``None`` are ignored.

    Raises:
        ConfigError: the file is missing or not a mapping, a key is unknown, or a value has the
            wrong type (the message names the file and the key).
    """
    data: dict[str, Any] = {}
    where = "command line"
    if config_file is not None:
        path = Path(config_file)
        where = str(path)
        loaded = read_settings(path)
        unknown = sorted(set(loaded) - set(cls.model_fields))
        if unknown:
            raise ConfigError(
                f"{path}: unknown setting(s) {', '.join(unknown)} for {cls.__name__}; "
                f"known: {', '.join(cls.model_fields)}"
            )
        data.update(loaded)
    for key, value in (overrides or {}).items():
        if value is not None:
            data[key] = value
    try:
        return cls.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise ConfigError(f"invalid {cls.__name__} settings (from {where}): {problems}") from e


def dump_config(config: BaseModel, path: str | Path) -> None:
    """Write the fully resolved config as YAML (UTF-8, keys in declaration order)."""
    Path(path).write_text(
        yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False), encoding="utf-8"
    )


def _unwrap_optional(annotation: Any) -> Any:
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _parse_bool(value: str) -> bool:
    try:
        return click.BOOL.convert(value, None, None)
    except click.BadParameter as e:
        raise typer.BadParameter(f"expected true or false, got {value!r}") from e


def _parse_choice(choices: list[str], value: str) -> str:
    if value not in choices:
        raise typer.BadParameter(f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def _option_for(name: str, annotation: Any, description: str | None, bool_style: str) -> tuple[Any, Any]:
    """Return (annotation, typer.Option) for one config field; every default is None."""
    help_text = description or ""
    ann = _unwrap_optional(annotation)
    origin = typing.get_origin(ann)
    if ann is bool:
        if bool_style == "flag":
            return bool | None, typer.Option(None, f"--{name}/--no-{name}", help=help_text, show_default=False)
        return str | None, typer.Option(  # str: typer would turn a bool into a bare flag
            None, f"--{name}", help=help_text, parser=_parse_bool, metavar="true|false", show_default=False
        )
    if origin is Literal:
        choices = [str(c) for c in typing.get_args(ann)]
        return str | None, typer.Option(
            None, f"--{name}", help=help_text, parser=functools.partial(_parse_choice, choices), metavar="|".join(choices)
        )
    if origin in (list, tuple):
        return str | None, typer.Option(None, f"--{name}", help=help_text + " (comma-separated)")
    if ann in (int, float, str, Path):
        return ann | None, typer.Option(None, f"--{name}", help=help_text, show_default=False)
    return str | None, typer.Option(None, f"--{name}", help=help_text)


def config_options(
    cls: type[BaseModel], *, bool_style: Literal["value", "flag"] = "value", exclude: tuple[str, ...] = ()
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a typer command: add one ``--<field>`` option per field of ``cls``.

    The decorated function must accept a keyword argument ``overrides``: a dict holding only the
    fields the user set on the command line (comma-separated list fields already split).
    Pass it to :func:`load_config`. Field descriptions become the options' help text.

    Args:
        bool_style: ``"value"`` gives ``--use_4bit false`` (as HF argument parsers do);
            ``"flag"`` gives ``--load_in_4bit/--no-load_in_4bit``.
        exclude: fields not to expose (the command declares them itself).
    """

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        sig = inspect.signature(func, eval_str=True)
        own = [p for p in sig.parameters.values() if p.name != "overrides"]
        taken = {p.name for p in own}
        generated: list[inspect.Parameter] = []
        list_fields: set[str] = set()
        for name, field in cls.model_fields.items():
            if name in exclude or name in taken:
                continue
            ann, option = _option_for(name, field.annotation, field.description, bool_style)
            if typing.get_origin(_unwrap_optional(field.annotation)) in (list, tuple):
                list_fields.add(name)
            generated.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=ann))

        @functools.wraps(func)
        def wrapper(**kwargs: Any) -> Any:
            overrides = {}
            for p in generated:
                value = kwargs.pop(p.name)
                if value is not None and p.name in list_fields:
                    value = [v.strip() for v in value.split(",") if v.strip()]
                overrides[p.name] = value
            return func(**kwargs, overrides=overrides)

        params = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own] + generated
        wrapper.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        wrapper.__annotations__ = {p.name: p.annotation for p in params}
        del wrapper.__wrapped__  # typer must see the new signature, not the original one
        return wrapper

    return decorate
