"""popctl's modules and what each imports, read with ``ast`` (tests/unit/test_layers.py)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "popctl"
# Dotted names below popctl: "session", "cli.group", "app.runner"; a package by its own name.
MODULES = sorted(".".join(path.relative_to(PACKAGE).with_suffix("").parts).removesuffix(
    ".__init__") for path in PACKAGE.rglob("*.py"))


def module_path(module: str) -> Path:
    path = PACKAGE.joinpath(*module.split("."))
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def parse_module(module: str) -> ast.Module:
    return ast.parse(module_path(module).read_text(encoding="utf-8"))


def _names(nodes: list[ast.stmt] | list[ast.AST]) -> set[str]:
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against the popctl package
                base = ".".join(["popctl", *filter(None, [node.module])])
            else:
                base = node.module or ""
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    parents = {".".join(name.split(".")[:i]) for name in found
               for i in range(1, name.count(".") + 1)}
    return found | parents


def imports(module: str) -> set[str]:
    """Every module ``popctl/<module>.py`` imports, as full dotted names.

    ``from popctl import formatters`` counts as both ``popctl`` and ``popctl.formatters`` (the
    name may be a module or an attribute; treating it as a module is the strict reading), and
    every import also counts as each of its parent packages (``ssl`` for ``ssl.x``).
    """
    return _names(list(ast.walk(parse_module(module))))


def top_level_imports(module: str) -> set[str]:
    """What the module imports when it is imported: its body's imports, not those inside
    functions or under ``if TYPE_CHECKING:``."""
    return _names(list(parse_module(module).body))
