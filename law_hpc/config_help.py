"""Every config key with its default and docstring: the epilog of the entry points' --help.

The docstrings are the string literals under the fields of law_hpc/config.py, read from its source.
"""
from __future__ import annotations

import ast
import dataclasses
import inspect
import textwrap

import yaml

from .config import Config


def field_docs(cls) -> dict[str, str]:
    """The docstring of each field of dataclass `cls` (the string literal under it), whitespace folded; none for
    a class made at run time (config.MethodsConfig: its leaves are the methods' own Options)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    body = ast.parse(textwrap.dedent(source)).body[0].body
    return {node.target.id: " ".join(after.value.value.split()) for node, after in zip(body, body[1:])
            if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant) and isinstance(after.value.value, str)}


def describe_keys(cfg: Config | None = None) -> list[tuple[str, str, str]]:
    """(dotted key, value in `cfg` (default: the built-in defaults), docstring) of every config key."""
    def walk(obj, prefix):
        docs = field_docs(type(obj))
        for item in dataclasses.fields(obj):
            value = getattr(obj, item.name)
            if dataclasses.is_dataclass(value):
                yield from walk(value, f"{prefix}{item.name}.")
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
