"""Loading and validating the workflow configuration (the same schema the Snakefile uses).

The schema (``tdpcr/schemas/config.schema.yaml``) is the one place that holds every key, its
type, its default and its description (the configuration reference is generated from it):
:func:`validate_config` fills in the defaults while it validates, for ``tdpcr`` commands and
for the Snakefile alike, so no rule or module keeps a default of its own.
"""

from __future__ import annotations

import copy
import functools
import math
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tdpcr.core.errors import ConfigError
from tdpcr.core.safe_yaml import (
    MAX_ALIAS_EXPANSION,
    MAX_DEPTH,
    MAX_QUOTE,
    ConfigLoader,
    YAMLRefused,
    cut,
    load_yaml,
    read_yaml_file,
    short_repr,
)


@functools.cache
def _parsed_schema() -> dict[str, Any]:
    # Parsed once per process: PyYAML's pure-Python parser takes a second or more for the
    # schema on a loaded CPU, and building the `tdpcr` parser asks for a dozen defaults.
    text = resources.files("tdpcr").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def schema() -> dict[str, Any]:
    """The JSON schema of ``config/config.yaml`` (shipped inside the package; a copy)."""
    return copy.deepcopy(_parsed_schema())


def schema_path() -> Path:
    """Filesystem path of the schema, for ``snakemake.utils.validate``."""
    return Path(str(resources.files("tdpcr").joinpath("schemas/config.schema.yaml")))


#: The loader of every config tdpcr reads (the name earlier versions gave it).
NumberLoader = ConfigLoader


#: The shipped configs (``config/<name>.yaml`` of the repository).
SHIPPED_CONFIG_DIR = Path(__file__).resolve().parents[2] / "config"


def _with_defaults(cls: type[jsonschema.protocols.Validator]) -> type:
    """A validator class that also writes each property's schema ``default`` when absent."""
    check_properties = cls.VALIDATORS["properties"]

    def properties(validator, props, instance, schema_) -> Iterator[jsonschema.ValidationError]:
        if isinstance(instance, dict):
            for name, sub in props.items():
                if "default" in sub and name not in instance:
                    instance[name] = copy.deepcopy(sub["default"])
        yield from check_properties(validator, props, instance, schema_)

    return jsonschema.validators.extend(cls, {"properties": properties})


@functools.cache
def _validator() -> jsonschema.protocols.Validator:
    return _with_defaults(jsonschema.Draft202012Validator)(schema())


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Fill in the schema's defaults (in place) and validate; return ``config``.

    Raises:
        ConfigError: naming the first offending key and what was expected.
    """
    _check_values(config, source)
    validator = _validator()
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source}: {describe_error(errors[0])}")
    dataset = config.get("dataset")
    if dataset not in config.get("datasets", {}):
        known = ", ".join(sorted(config.get("datasets", {})))
        raise ConfigError(
            f"{source}: key 'dataset' is {short_repr(dataset)}, not one of datasets: {known}"
        )
    # The schema checks the first is 1 and the span; the order it cannot express, and the
    # budget study's "first budget whose verdict changes" reads them in order.
    multipliers = config.get("budget", {}).get("multipliers", [])
    if multipliers != sorted(multipliers):
        raise ConfigError(
            f"{source}: key 'budget.multipliers' is {short_repr(multipliers)}, not ascending"
        )
    return config


def _check_values(config: Any, source: str) -> None:
    """Refuse a number that is not finite, and a config that shared values blow up.

    The schema cannot do the first: NaN passes ``minimum: 0`` (every comparison with NaN is
    false), and a NaN loss weight trains to NaN weights with exit status 0. The second guards
    the validator against configs loaded by others (Snakemake reads ``--configfile`` with its
    own YAML loader): the validator walks a value shared by many aliases once per alias.
    """
    seen: dict[int, tuple[int, int]] = {}
    values, _ = _expanded(config, (), seen, set(), source)
    written = sum(len(container) + 1 for container in _containers(config))
    if values > written + MAX_ALIAS_EXPANSION:
        raise ConfigError(
            f"{source}: shared values (YAML aliases) expand to more than "
            f"{MAX_ALIAS_EXPANSION} values; write the config out"
        )


def _containers(config: Any) -> Iterator[Any]:
    """Each distinct dict and list of ``config``, once."""
    stack, done = [config], set()
    while stack:
        value = stack.pop()
        if isinstance(value, (dict, list)) and id(value) not in done:
            done.add(id(value))
            yield value
            stack.extend(value.values() if isinstance(value, dict) else value)


def _expanded(
    value: Any, path: tuple, seen: dict[int, tuple[int, int]], above: set[int], source: str
) -> tuple[int, int]:
    """(values, levels) that ``value`` stands for, a shared value counted wherever it appears.

    Each dict and list is walked once (``seen`` keeps its counts), so this costs the size of
    the config as written, not as expanded.
    """
    key = cut(".".join(map(str, path)))
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{source}: key '{key}': {value} is not a finite number")
    if not isinstance(value, (dict, list)):
        return 1, 0
    if id(value) in seen:
        counts = seen[id(value)]
    else:
        if id(value) in above:
            raise ConfigError(f"{source}: key '{key}' contains itself (a recursive alias)")
        if len(path) > MAX_DEPTH:
            raise ConfigError(f"{source}: key '{key}' nests deeper than {MAX_DEPTH} levels")
        above.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        inner = [_expanded(item, (*path, name), seen, above, source) for name, item in items]
        above.discard(id(value))
        counts = (1 + sum(v for v, _ in inner), 1 + max((d for _, d in inner), default=0))
        seen[id(value)] = counts
    if len(path) + counts[1] > MAX_DEPTH:
        raise ConfigError(f"{source}: key '{key}' nests deeper than {MAX_DEPTH} levels")
    return counts


#: Python types a value of each JSON-schema type may have after YAML parsing.
_SCHEMA_TYPES: dict[str, tuple[type, ...]] = {
    "integer": (int,),
    "number": (int, float),
    "boolean": (bool,),
    "null": (type(None),),
    "array": (list,),
    "object": (dict,),
}


def coerce_strings(config: dict[str, Any]) -> dict[str, Any]:
    """Read string values as YAML where the schema expects another type; in place.

    Snakemake hands ``--config train='{gpus_per_job: 4, lr: 3e-4}'`` over as strings
    (``'4'``, ``'3e-4'``); each becomes the number the schema asks for. A string that does not
    parse to an allowed type stays a string, for the validator to name.
    """
    _coerce(config, schema())
    return config


def _schema_types(node: dict[str, Any]) -> list[str]:
    types = node.get("type", [])
    return [types] if isinstance(types, str) else list(types)


def _coerce(value: Any, node: dict[str, Any]) -> Any:
    if isinstance(value, dict):
        extra = node.get("additionalProperties")
        for key, item in value.items():
            sub = node.get("properties", {}).get(key, extra)
            if isinstance(sub, dict):
                value[key] = _coerce(item, sub)
        return value
    if isinstance(value, list) and isinstance(node.get("items"), dict):
        return [_coerce(item, node["items"]) for item in value]
    types = _schema_types(node)
    if not isinstance(value, str) or not types or "string" in types:
        return value
    try:
        parsed = load_yaml(value)
    except yaml.YAMLError:
        return value
    allowed = tuple(t for name in types for t in _SCHEMA_TYPES.get(name, ()))
    if isinstance(parsed, allowed) and not (isinstance(parsed, bool) and bool not in allowed):
        return _coerce(parsed, node)
    return value


def describe_error(error: jsonschema.ValidationError) -> str:
    """One line naming the dotted key and what was expected (values quoted in short)."""
    key = cut(".".join(str(p) for p in error.absolute_path))
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{key}." if key else ""
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{cut(prefix + str(unknown[0]))}'{hint}"
    if error.validator == "required":
        return f"key '{key or '<top>'}' misses {error.message.split(' is ')[0]}"
    if error.validator == "contains":  # jsonschema's message does not say which items
        wanted = ", ".join(f"{k} {v}" for k, v in error.validator_value.items())
        return f"key '{key}': {short_repr(error.instance)} has no item with {wanted}"
    return f"key '{key}': {_short_message(error)}"


def _short_message(error: jsonschema.ValidationError) -> str:
    """jsonschema's message, whose leading repr of the offending value may be any length."""
    message, quoted = error.message, repr(error.instance)
    if message.startswith(quoted):
        message = short_repr(error.instance) + message[len(quoted) :]
    return cut(message, 4 * MAX_QUOTE)


def load_config(path: Path) -> dict[str, Any]:
    """Read and validate a YAML config file (bounded: see :mod:`tdpcr.core.safe_yaml`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    config = read_config_file(path)
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return validate_config(config, str(path))


def read_config_file(path: Path) -> Any:
    """The YAML of a config file, with one-line errors naming the file.

    The workflow checks the files given to Snakemake with it too (``workflow.configfiles``):
    Snakemake loads them with its own YAML loader, which knows none of these bounds.

    Raises:
        ConfigError: unreadable, too large, not YAML, or breaking a bound of the loader.
    """
    try:
        return read_yaml_file(path)
    except OSError as err:
        raise ConfigError(f"{path}: cannot read the config ({err.strerror})") from None
    except YAMLRefused as err:
        raise ConfigError(f"{path}: {err}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({_yaml_problem(err)})") from None


def _yaml_problem(err: yaml.YAMLError) -> str:
    """PyYAML's problem and line (its message spans lines and quotes the text)."""
    problem = getattr(err, "problem", None)
    mark = getattr(err, "problem_mark", None)
    if problem is None:
        return cut(str(err).splitlines()[0], 2 * MAX_QUOTE)
    where = f"line {mark.line + 1}: " if mark is not None else ""
    return f"{where}{cut(problem, 2 * MAX_QUOTE)}"


def apply_overrides(config: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Set dotted keys (``train.lr=3e-4``) in a copy of ``config`` and validate it again.

    Values are YAML (``3e-4``, ``[1, 2]``, ``null``), read with the config's loader and
    bounds; the schema then checks every key and type. Used for sweeps and extra training
    seeds, which differ from the workflow config only in these keys.
    """
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        shown = short_repr(item)
        if not sep or not key:
            raise ConfigError(f"--set {shown}: expected KEY=VALUE, e.g. train.lr=3e-4")
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {shown}: {short_repr(part)} is not a section")
        try:
            node[parts[-1]] = load_yaml(text)
        except YAMLRefused as err:
            raise ConfigError(f"--set {shown}: value refused ({err})") from None
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {shown}: value is not YAML ({_yaml_problem(err)})") from None
    return validate_config(config, source)


def schema_default(*keys: str) -> Any:
    """The schema's default of a config key (``schema_default("tiling", "split_fractions")``),
    for command-line defaults that must agree with the workflow's."""
    node = _parsed_schema()
    for key in keys:
        node = node["properties"][key]
    return copy.deepcopy(node["default"])


def shipped_config(name: str) -> dict[str, Any]:
    """One of the repository's configs (``default`` = config/config.yaml, ``paper``, ``tiny``).

    Benchmarks and tests read model sizes from these instead of keeping copies.
    """
    path = SHIPPED_CONFIG_DIR / ("config.yaml" if name == "default" else f"{name}.yaml")
    if not path.is_file():
        raise ConfigError(
            f"{path}: shipped config {name!r} not found (it lives in the repository's config/ "
            "folder: install tdpcr from a clone)"
        )
    return load_config(path)
