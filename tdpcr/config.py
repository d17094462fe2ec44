"""Loading and validating the workflow configuration (the same schema the Snakefile uses)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from tdpcr.errors import ConfigError


def schema() -> dict[str, Any]:
    """The JSON schema of ``config/config.yaml`` (shipped inside the package)."""
    text = resources.files("tdpcr").joinpath("schemas/config.schema.yaml").read_text()
    return yaml.safe_load(text)


def schema_path() -> Path:
    """Filesystem path of the schema, for ``snakemake.utils.validate``."""
    return Path(str(resources.files("tdpcr").joinpath("schemas/config.schema.yaml")))


def validate_config(config: dict[str, Any], source: str = "config") -> dict[str, Any]:
    """Raise ConfigError naming the first offending key, else return ``config``."""
    validator = jsonschema.Draft202012Validator(schema())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError(f"{source}: {describe_error(errors[0])}")
    dataset = config.get("dataset")
    if dataset not in config.get("datasets", {}):
        known = ", ".join(sorted(config.get("datasets", {})))
        raise ConfigError(f"{source}: key 'dataset' is {dataset!r}, not one of datasets: {known}")
    return config


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
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(config, dict):
        raise ConfigError(f"{path}: expected a mapping of keys at the top level")
    return validate_config(config, str(path))
