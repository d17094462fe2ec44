"""The documentation's reference pages, generated at build time from their one source each.

* **Configuration** from the config schema (``tdpcr/schemas/config.schema.yaml``): every key's
  type, default and description live there and nowhere else.
* **Command line** from the argparse parsers: ``tdpcr`` (:func:`tdpcr.cli.build_parser`, every
  stage's sub-commands) and ``python -m tdpcr.benchmarks.gpu``.
* **API** pages for the public modules (:data:`API_MODULES`), filled by mkdocstrings from
  their docstrings.

MkDocs runs this file as a hook (``hooks:`` in ``mkdocs.yml``): :func:`on_files` adds the
pages to the build and :func:`on_config` lists the API pages in the navigation, so no
generated page is ever committed. ``config/README.md`` (what the Snakemake workflow catalogue
shows) holds the same configuration table between markers: ``python
scripts/docs_reference.py`` rewrites it, and ``tests/test_docs.py`` checks it is current and
that no schema key or command-line option lacks a description.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "tdpcr" / "schemas" / "config.schema.yaml"
DEFAULT_CONFIG = REPO / "config" / "config.yaml"
CONFIG_README = REPO / "config" / "README.md"
BEGIN = "<!-- BEGIN generated from tdpcr/schemas/config.schema.yaml: do not edit by hand -->"
END = "<!-- END generated -->"

#: Public modules of the API reference, in the order of the package's layers (lowest first).
API_MODULES: tuple[str, ...] = (
    "tdpcr.core.config",
    "tdpcr.core.specs",
    "tdpcr.core.metrics",
    "tdpcr.core.checkpoint",
    "tdpcr.core.errors",
    "tdpcr.data.synthetic",
    "tdpcr.data.realism",
    "tdpcr.data.sources",
    "tdpcr.data.tiling",
    "tdpcr.data.store",
    "tdpcr.data.dataset",
    "tdpcr.models",
    "tdpcr.tracking",
    "tdpcr.training.variants",
    "tdpcr.training.trainer",
    "tdpcr.evaluation.protocols",
    "tdpcr.evaluation.claims",
    "tdpcr.evaluation.budget",
    "tdpcr.evaluation.report",
    "tdpcr.prediction.engine",
    "tdpcr.prediction.options",
    "tdpcr.prediction.quantize",
    "tdpcr.prediction.stac",
)
#: Where the generated pages go, relative to ``docs/``.
CONFIG_PAGE = "reference/configuration.md"
CLI_PAGE = "reference/cli.md"
API_FOLDER = "reference/api"


# ---------------------------------------------------------------------------------------------
# Configuration


@dataclass(frozen=True)
class SchemaKey:
    """One key of the config schema, flattened: ``train.steps.phase1``, ``datasets.<name>.root``."""

    path: str
    node: dict[str, Any]
    required: bool

    @property
    def section(self) -> bool:
        """An object whose keys are listed themselves (no value of its own to describe)."""
        entry = self.node.get("additionalProperties")
        return "properties" in self.node or (isinstance(entry, dict) and "properties" in entry)


def schema_keys(node: dict[str, Any] | None = None, prefix: str = "") -> Iterator[SchemaKey]:
    """Every key of the schema, depth first in the schema's order.

    Keys of a free-form map (``datasets``, ``predict.inputs``, ``train.finetune_lr``) appear as
    ``<name>``; an entry of such a map is listed only when it is itself a section (its keys
    then follow), else the map's own row describes it.
    """
    if node is None:
        node = yaml.safe_load(SCHEMA.read_text())
    required = set(node.get("required", []))
    for name, child in node.get("properties", {}).items():
        path = f"{prefix}.{name}" if prefix else name
        yield SchemaKey(path, child, name in required)
        yield from schema_keys(child, path)
        entry = child.get("additionalProperties")
        if isinstance(entry, dict) and "properties" in entry:
            yield from schema_keys(entry, f"{path}.<name>")


def undocumented_schema_keys(schema: dict[str, Any] | None = None) -> list[str]:
    """Schema keys without a ``description`` (a test keeps this empty)."""
    return [
        key.path for key in schema_keys(schema) if not str(key.node.get("description", "")).strip()
    ]


def _bound(node: dict[str, Any]) -> str:
    parts = []
    for word, sign in (
        ("minimum", ">="),
        ("exclusiveMinimum", ">"),
        ("maximum", "<="),
        ("exclusiveMaximum", "<"),
    ):
        if word in node:
            parts.append(f"{sign} {node[word]}")
    if "multipleOf" in node:
        parts.append(f"multiple of {node['multipleOf']}")
    return ", ".join(parts)


_TYPE_WORDS = {
    "integer": "int",
    "number": "number",
    "string": "string",
    "boolean": "bool",
    "null": "null",
}


def type_text(node: dict[str, Any]) -> str:
    """A schema node's type in a few words: ``int >= 1``, ``list of number (3)``, ..."""
    if "enum" in node:
        return " / ".join(f"`{json.dumps(v)}`" if v is None else f"`{v}`" for v in node["enum"])
    types = node.get("type", "object")
    words = []
    for kind in [types] if isinstance(types, str) else types:
        if kind == "array":
            items = node.get("items", {})
            text = f"list of {type_text(items)}" if items else "list"
            if node.get("minItems") is not None and node.get("minItems") == node.get("maxItems"):
                text += f" ({node['minItems']})"
            words.append(text)
        elif kind == "object":
            entry = node.get("additionalProperties")
            if "properties" in node or (isinstance(entry, dict) and "properties" in entry):
                words.append("section")
            elif isinstance(entry, dict):
                words.append(f"map name -> {type_text(entry)}")
            else:
                words.append("map")
        else:
            words.append(_TYPE_WORDS.get(kind, kind))
    text = " or ".join(words)
    bound = _bound(node)
    return f"{text} {bound}" if bound else text


def _value(value: Any) -> str:
    return f"`{json.dumps(value)}`"


def _lookup(config: Any, path: str) -> tuple[bool, Any]:
    for part in path.split("."):
        if not isinstance(config, dict) or part not in config:
            return False, None
        config = config[part]
    return True, config


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def config_table(keys: list[SchemaKey]) -> str:
    """The Markdown table of ``keys``: type, default, the value in config.yaml, meaning."""
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())
    lines = [
        "| key | type | default | `config.yaml` | description |",
        "|---|---|---|---|---|",
    ]
    for key in keys:
        node = key.node
        if "default" in node:
            default = _value(node["default"])
        else:
            default = "required" if key.required else ""
        found, value = _lookup(shipped, key.path)
        shown = _value(value) if found and not key.section else ""
        row = [f"`{key.path}`", type_text(node), default, shown, node.get("description", "")]
        lines.append("| " + " | ".join(_cell(c) for c in row) + " |")
    return "\n".join(lines)


def config_reference(heading_level: int = 2) -> str:
    """Every schema key, grouped by its top-level section."""
    schema = yaml.safe_load(SCHEMA.read_text())
    keys = list(schema_keys(schema))
    hashes = "#" * heading_level
    blocks = []
    plain = [k for k in keys if "." not in k.path and not k.section]
    if plain:
        blocks.append(f"{hashes} Top level\n\n{config_table(plain)}")
    for top in keys:
        if "." in top.path or not top.section:
            continue
        members = [k for k in keys if k.path.startswith(f"{top.path}.")]
        # The optional note goes under the heading: the heading's anchor stays `#<section>`.
        optional = "" if top.required else " Optional: the whole section may be left out."
        text = _cell(top.node.get("description", "")) + optional
        blocks.append(f"{hashes} `{top.path}`\n\n{text}\n\n{config_table(members)}")
    return "\n\n".join(blocks)


def config_page() -> str:
    intro = (
        "# Configuration reference\n\n"
        "Generated from the schema, `tdpcr/schemas/config.schema.yaml`, which holds every "
        "key's type, default and description; the workflow and every `tdpcr` command that "
        "reads a config validate against it. *default* is the schema's default (a key without "
        "one must be given); *`config.yaml`* is the value in `config/config.yaml`, the embedded "
        "default run. How to use another config and check it: "
        "[Getting started](../getting-started.md#your-own-configuration).\n"
    )
    return f"{intro}\n{config_reference()}\n"


def config_readme_block() -> str:
    """The generated part of ``config/README.md``."""
    return config_reference(heading_level=3)


def render_config_readme(text: str) -> str:
    """``text`` (config/README.md) with its generated block replaced."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"{CONFIG_README}: markers not found")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n\n{config_readme_block()}\n\n{END}{tail}"


# ---------------------------------------------------------------------------------------------
# Command line


def parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """Every command's parser with its full name, sub-commands after their parent."""
    if str(REPO) not in sys.path:  # this checkout's tdpcr, whatever else is installed
        sys.path.insert(0, str(REPO))
    from tdpcr.benchmarks.gpu import build_parser as gpu_parser
    from tdpcr.cli import build_parser

    found: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(name: str, parser: argparse.ArgumentParser) -> None:
        found.append((name, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub_name, sub in action.choices.items():
                    walk(f"{name} {sub_name}", sub)

    walk("tdpcr", build_parser())
    walk("python -m tdpcr.benchmarks.gpu", gpu_parser())
    return found


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [
        action
        for action in parser._actions
        if not isinstance(action, argparse._HelpAction | argparse._SubParsersAction)
        and action.help != argparse.SUPPRESS
    ]


def undocumented_cli_options(
    found: list[tuple[str, argparse.ArgumentParser]] | None = None,
) -> list[str]:
    """Options and arguments without a help text (a test keeps this empty)."""
    return [
        f"{name} {'/'.join(action.option_strings) or action.dest}"
        for name, parser in (parsers() if found is None else found)
        for action in _options(parser)
        if not (action.help or "").strip()
    ]


def _help(action: argparse.Action, parser: argparse.ArgumentParser) -> str:
    text = action.help or ""
    if "%(" in text:
        params = {**vars(action), "prog": parser.prog}
        if action.choices is not None:
            params["choices"] = ", ".join(map(str, action.choices))
        text = text % params
    elif action.choices is not None:
        text += f" (one of: {', '.join(f'`{c}`' for c in action.choices)})"
    return text


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    default = action.default
    if default is None or default is argparse.SUPPRESS or isinstance(action.const, bool):
        return ""
    return f"`{' '.join(map(str, default)) if isinstance(default, list) else default}`"


def _usage(parser: argparse.ArgumentParser) -> str:
    """The usage line at a fixed width (``format_usage`` follows the terminal's width)."""
    formatter = argparse.HelpFormatter(prog=parser.prog, width=100)
    formatter.add_usage(parser.usage, parser._actions, parser._mutually_exclusive_groups, "")
    return formatter.format_help().strip()


def cli_reference() -> str:
    """One section per command: what it does, its usage and its options."""
    blocks = []
    for name, parser in parsers():
        subs = [
            f"`{name} {sub}`"
            for action in parser._actions
            if isinstance(action, argparse._SubParsersAction)
            for sub in action.choices
        ]
        # The first paragraph: the GPU benchmark's description is its whole module docstring.
        text = _cell((parser.description or "").split("\n\n")[0])
        usage = _usage(parser)
        block = [f"## `{name}`", text, f"```text\n{usage}\n```"]
        options = _options(parser)
        if options:
            rows = ["| option | default | description |", "|---|---|---|"]
            for action in options:
                flag = ", ".join(f"`{o}`" for o in action.option_strings) or f"`{action.dest}`"
                rows.append(f"| {flag} | {_default(action)} | {_cell(_help(action, parser))} |")
            block.append("\n".join(rows))
        if subs:
            block.append(f"Sub-commands: {', '.join(subs)}.")
        blocks.append("\n\n".join(b for b in block if b))
    return "\n\n".join(blocks)


def cli_page() -> str:
    intro = (
        "# Command-line reference\n\n"
        "Generated from the argparse parsers: `tdpcr` (every stage registers its own "
        "sub-commands in its `commands.py`) and the stand-alone GPU benchmark, `python -m "
        "tdpcr.benchmarks.gpu`. `tdpcr COMMAND --help` prints the same. A mistake in the "
        "arguments stops with one line and exit status 2 "
        "([Bad input and failure behaviour](../bad-input.md)).\n"
    )
    return f"{intro}\n{cli_reference()}\n"


# ---------------------------------------------------------------------------------------------
# API


def api_pages() -> dict[str, str]:
    """``reference/api/<module>.md`` -> a page mkdocstrings fills from the module."""
    pages = {f"{API_FOLDER}/index.md": _api_index()}
    for module in API_MODULES:
        pages[f"{API_FOLDER}/{module}.md"] = f"# `{module}`\n\n::: {module}\n"
    return pages


def _api_index() -> str:
    rows = "\n".join(f"- [`{m}`]({m}.md)" for m in API_MODULES)
    return (
        "# API reference\n\n"
        "The public modules, from their docstrings, lowest layer first (the layers: "
        "[Development](../../development.md#layers)). Everything else is internal and may "
        "change without notice.\n\n"
        f"{rows}\n"
    )


def generated_pages() -> dict[str, str]:
    """Every generated page, by its path under ``docs/``."""
    return {CONFIG_PAGE: config_page(), CLI_PAGE: cli_page(), **api_pages()}


# ---------------------------------------------------------------------------------------------
# MkDocs hooks


def on_config(config: Any) -> Any:
    """List the API pages under "Reference" in the navigation."""
    for entry in config["nav"] or []:
        if isinstance(entry, dict) and "Reference" in entry:
            entry["Reference"].append(
                {"API": [f"{API_FOLDER}/index.md"] + [f"{API_FOLDER}/{m}.md" for m in API_MODULES]}
            )
    return config


def on_files(files: Any, config: Any) -> Any:
    """Add the generated pages to the build."""
    from mkdocs.structure.files import File

    for path, content in generated_pages().items():
        files.append(File.generated(config, path, content=content))
    return files


def main() -> None:
    """Rewrite the generated block of config/README.md."""
    CONFIG_README.write_text(render_config_readme(CONFIG_README.read_text()))
    print(f"updated {CONFIG_README.relative_to(REPO)}")


if __name__ == "__main__":
    main()
