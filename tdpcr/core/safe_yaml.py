"""Reading the YAML users write: numbers as YAML 1.2 reads them, and bounds a config must keep.

A config is a few KB with no alias or a few. PyYAML composes an alias as a shared node, which
costs nothing while loading; but everything that walks the loaded config afterwards (the schema
validator and its error messages, the resolved config Snakemake rules read, digests) visits a
shared value once per alias, so a 2 KB file of nested aliases ("billion laughs") becomes 10^9
values there and the command hangs. PyYAML offers no option to bound aliases, nesting or
duplicate keys (a duplicate silently wins), so :class:`ConfigLoader`'s composer counts them and
refuses, with one line naming the line of the file, what no config needs.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

#: Largest config file read (real configs are a few KB; parsing 50 MB takes minutes).
MAX_FILE_BYTES = 1_000_000
#: Most aliases (``*name``) in one document.
MAX_ALIASES = 100
#: Most values aliases may add to those written out in the file.
MAX_ALIAS_EXPANSION = 10_000
#: Deepest nesting of sections and lists (PyYAML's composer recurses once per level).
MAX_DEPTH = 32
#: Longest repr of a value quoted in a message.
MAX_QUOTE = 80

_MERGE_TAG = "tag:yaml.org,2002:merge"


class YAMLRefused(yaml.YAMLError):
    """YAML that breaks a bound or repeats a key; the message is one line with the line number."""


def cut(text: str, limit: int = MAX_QUOTE) -> str:
    """``text`` cut to ``limit`` characters, for messages that quote what a user wrote."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def short_repr(value: Any, limit: int = MAX_QUOTE) -> str:
    """``repr(value)`` cut to ``limit`` characters."""
    return cut(repr(value), limit)


class ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 numbers and the bounds of this module.

    Numbers: PyYAML implements YAML 1.1, where a float needs a dot (``1.0e-3``) and ``1e-3`` is
    a string, a trap for anyone typing a learning rate; YAML 1.2 (and every other parser users
    know) reads it as a number. The implicit float resolver is replaced by a 1.2-style one.
    """

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._path: list[str] = []
        #: id(node) -> (values, levels) it stands for once aliases are expanded.
        self._expanded: dict[int, tuple[int, int]] = {}
        #: id(mapping node) -> line of each key composed so far (to refuse a repeated one).
        self._keys: dict[int, dict[tuple[str, str], int]] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        key = self._key_name(parent, index)
        if key is not None:
            self._path.append(key)
        self._depth += 1
        try:
            if self.check_event(yaml.AliasEvent):
                self._count_alias()
            elif self._depth > MAX_DEPTH:
                self._refuse(f"nested deeper than {MAX_DEPTH} levels", self.peek_event().start_mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
            if key is not None:
                self._path.pop()
        if id(node) not in self._expanded:
            self._record(node)
        return node

    def _key_name(self, parent: Node | None, index: Any) -> str | None:
        """The key (or list position) whose value is being composed; refuses a repeated key."""
        if isinstance(parent, SequenceNode) and isinstance(index, int):
            return str(index)
        if not (isinstance(parent, MappingNode) and isinstance(index, ScalarNode)):
            return None
        line = index.start_mark.line + 1
        if index.tag != _MERGE_TAG:  # `<<: *base` and then a key of base is no repeat
            seen = self._keys.setdefault(id(parent), {})
            ident = (index.tag, index.value)
            if ident in seen:
                name = cut(".".join([*self._path, index.value]))
                lines = f"lines {seen[ident]} and {line}" if seen[ident] != line else f"line {line}"
                self._refuse(f"key '{name}' is given twice ({lines}); the last would silently win")
            seen[ident] = line
        return index.value

    def _count_alias(self) -> None:
        event = self.peek_event()
        self._aliases += 1
        if self._aliases > MAX_ALIASES:
            self._refuse(f"more than {MAX_ALIASES} aliases (*name); a config needs a few",
                         event.start_mark)  # fmt: skip
        node = self.anchors.get(event.anchor)
        if node is not None and id(node) not in self._expanded:
            self._refuse(f"alias *{event.anchor} lies inside its own anchor (endless)",
                         event.start_mark)  # fmt: skip

    def _record(self, node: Node) -> None:
        """What ``node`` stands for with its aliases expanded; refuse too much or too deep."""
        if isinstance(node, SequenceNode):
            children = node.value
        elif isinstance(node, MappingNode):
            children = [item for pair in node.value for item in pair]
            self._keys.pop(id(node), None)
        else:
            children = []
        expanded = [self._expanded[id(child)] for child in children]
        size = 1 + sum(values for values, _ in expanded)
        levels = 1 + max((depth for _, depth in expanded), default=0)
        self._expanded[id(node)] = (size, levels)
        if size > len(self._expanded) + MAX_ALIAS_EXPANSION:
            self._refuse(f"aliases expand to more than {MAX_ALIAS_EXPANSION} values",
                         node.start_mark)  # fmt: skip
        if levels > MAX_DEPTH:
            self._refuse(f"aliases nest deeper than {MAX_DEPTH} levels", node.start_mark)

    @staticmethod
    def _refuse(what: str, mark: yaml.Mark | None = None) -> None:
        raise YAMLRefused(f"line {mark.line + 1}: {what}" if mark is not None else what)


ConfigLoader.yaml_implicit_resolvers = {
    key: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ConfigLoader.add_implicit_resolver(
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


def load_yaml(text: str | bytes) -> Any:
    """Parse YAML text with :class:`ConfigLoader` (a SafeLoader: no arbitrary objects).

    Raises:
        yaml.YAMLError: not YAML, or :class:`YAMLRefused` (a bound broken, a key repeated, an
            integer too long for Python to read).
    """
    try:
        return yaml.load(text, Loader=ConfigLoader)
    except ValueError as err:  # PyYAML lets int() of > 4300 digits, a 13th month... through
        raise YAMLRefused(f"a value PyYAML cannot read ({str(err).split(':')[0]})") from None


def read_yaml_file(path: Path) -> Any:
    """Parse a YAML file of at most :data:`MAX_FILE_BYTES` bytes, without reading more.

    Raises:
        OSError: the file cannot be read. yaml.YAMLError: as :func:`load_yaml`, or
        :class:`YAMLRefused` for a larger file.
    """
    with open(path, "rb") as stream:  # bytes: PyYAML finds the encoding and names bad bytes
        data = stream.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise YAMLRefused(
            f"larger than the {MAX_FILE_BYTES} bytes a config may have (configs are a few KB)"
        )
    return load_yaml(data)
