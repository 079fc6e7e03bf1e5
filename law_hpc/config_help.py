"""Every config key with its default and docstring: the epilog of the entry points' --help.

The docstrings are the string literals under the fields of law_hpc/config.py (and of each weighting method's
`Options`, the section methods.<name>), read from their source.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

import yaml

from .config import Config
from .methods import METHODS, list_methods


def field_docs(cls) -> dict[str, str]:
    """The docstring of each field of dataclass `cls` (the string literal under it), whitespace folded."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    body = ast.parse(textwrap.dedent(source)).body[0].body
    return {node.target.id: " ".join(after.value.value.split()) for node, after in zip(body, body[1:])
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)}


def describe_keys(cfg: Config | None = None) -> list[tuple[str, str, str]]:
    """(dotted key, value in `cfg` (default: the built-in defaults), docstring) of every config key; the section
    methods.<name> is the method's `Options`."""
    def walk(obj, prefix):
        docs = field_docs(type(obj))
        for item in dataclasses.fields(obj):
            value = getattr(obj, item.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, f"{prefix}{item.name}.")
            elif prefix == "" and item.name == "methods":
                for name in (name for name in list_methods() if METHODS[name].Options is not None):
                    yield from walk(METHODS[name].options(obj), f"methods.{name}.")
            else:
                shown = yaml.safe_dump(value, default_flow_style=True, width=10 ** 6).strip().removesuffix("...")
                yield f"{prefix}{item.name}", shown.strip(), docs.get(item.name, "")
    return list(walk(cfg or Config(), ""))


def keys_help() -> str:
    """Every config key with its default and docstring: the epilog of the entry points' --help."""
    lines = ["config keys (YAML section.key, or --set section.key=value), with their defaults:"]
    for key, default, doc in describe_keys():
        lines.append(f"  {key} = {default}")
        lines += textwrap.wrap(doc, 100, initial_indent=" " * 6, subsequent_indent=" " * 6, break_on_hyphens=False)
    return "\n".join(lines)
