"""Loading and validating the workflow configuration (the same schema the Snakefile uses).

The schema (``tdpcr/schemas/config.schema.yaml``) is the one place that holds every key, its
type and its default: :func:`validate_config` fills in the defaults while it validates, for
``tdpcr`` commands and for the Snakefile alike, so no rule or module keeps a default of its own.
"""

from __future__ import annotations

import copy
import functools
import re
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tdpcr.core.errors import ConfigError


def schema() -> dict[str, Any]:
    """The JSON schema of ``config/config.yaml`` (shipped inside the package)."""
    text = resources.files("tdpcr").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def schema_path() -> Path:
    """Filesystem path of the schema, for ``snakemake.utils.validate``."""
    return Path(str(resources.files("tdpcr").joinpath("schemas/config.schema.yaml")))


class NumberLoader(yaml.SafeLoader):
    """PyYAML's safe loader reading numbers as YAML 1.2 does (``1e-3``, ``1_000`` are numbers).

    PyYAML implements YAML 1.1, where a float needs a dot (``1.0e-3``) and ``1e-3`` is a
    string, a trap for anyone typing a learning rate; YAML 1.2 (and every other parser users
    know) reads it as a number. The implicit float resolver is replaced by a 1.2-style one.
    """


NumberLoader.yaml_implicit_resolvers = {
    key: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
NumberLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(text: str) -> Any:
    """Parse YAML text with :class:`NumberLoader`."""
    return yaml.load(text, Loader=NumberLoader)  # a SafeLoader subclass: no arbitrary objects


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
    validator = _validator()
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source}: {describe_error(errors[0])}")
    dataset = config.get("dataset")
    if dataset not in config.get("datasets", {}):
        known = ", ".join(sorted(config.get("datasets", {})))
        raise ConfigError(f"{source}: key 'dataset' is {dataset!r}, not one of datasets: {known}")
    return config


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
    """One line naming the dotted key and what was expected."""
    key = ".".join(str(p) for p in error.absolute_path)
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = sorted(set(error.instance) - set(allowed))
        prefix = f"{key}." if key else ""
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"unknown key '{prefix}{unknown[0]}'{hint}"
    if error.validator == "required":
        return f"key '{key or '<top>'}' misses {error.message.split(' is ')[0]}"
    return f"key '{key}': {error.message}"


def load_config(path: Path) -> dict[str, Any]:
    """Read and validate a YAML config file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    try:
        config = load_yaml(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return validate_config(config, str(path))


def apply_overrides(config: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """Set dotted keys (``train.lr=3e-4``) in a copy of ``config`` and validate it again.

    Values are YAML (``3e-4``, ``[1, 2]``, ``null``); the schema then checks every key and type.
    Used for sweeps and extra training seeds, which differ from the workflow config only in
    these keys.
    """
    config = copy.deepcopy(config)
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.lr=3e-4")
        node = config
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is not a section")
        try:
            node[parts[-1]] = load_yaml(text)
        except yaml.YAMLError:
            raise ConfigError(f"--set {item!r}: value is not YAML") from None
    return validate_config(config, source)


def schema_default(*keys: str) -> Any:
    """The schema's default of a config key (``schema_default("tiling", "split_fractions")``),
    for command-line defaults that must agree with the workflow's."""
    node = schema()
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
