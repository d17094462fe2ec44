"""A griffe extension for the API reference: Sphinx roles in docstrings become code spans.

tdpcr's docstrings cross-reference with Sphinx roles (``:func:`~tdpcr.cli.main```), which
mkdocstrings would print as they are. Each becomes a code span of the name (the last part
when the target starts with ``~``, as Sphinx shows it); a link is not attempted, because most
targets are internal modules the reference leaves out, and a link to a page that does not
exist fails the strict build. Loaded by ``mkdocs.yml`` (mkdocstrings' ``extensions``).
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:func|class|mod|meth|attr|data|exc|obj|const|py:\w+):`(~?)([^`]+)`")


def plain_roles(text: str) -> str:
    """``text`` with every Sphinx role replaced by a code span of its target."""

    def span(match: re.Match[str]) -> str:
        target = match.group(2)
        return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"

    return _ROLE.sub(span, text)


class SphinxRoles(griffe.Extension):
    """Rewrite the roles of every docstring griffe loads."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain_roles(obj.docstring.value)
