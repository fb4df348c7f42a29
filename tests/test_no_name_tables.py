"""Behaviour is decided by classes and data, never by comparing method or model names.

Outside the method registry (attribot_rag/methods/, with AT2's own weights format in
attribot_rag/at2/) and the model aliases (attribot_rag/models.py), no comparison (``==``, ``!=``, ``in``, ``not in``), no set display
and no dict keyed by tuples may hold a string literal that names a registered method or an
offline model alias: such a table silently skips a newly registered method or model.
Defaults (``method="auto"``) and help texts are not decisions and are not checked.
"""

import ast
from pathlib import Path

from attribot_rag.methods import available_methods
from attribot_rag.models import ALIASES

PACKAGE = Path(__file__).resolve().parent.parent / "attribot_rag"
ALLOWED = {PACKAGE / "models.py"}
NAMES = set(available_methods()) | set(ALIASES)


def _literals(node: ast.AST) -> list[str]:
    return [n.value for n in ast.walk(node) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def _decisions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare):
            yield node, [*_literals(node.left), *(s for c in node.comparators for s in _literals(c))]
        elif isinstance(node, ast.Dict):  # a table keyed by (method, model) pairs
            yield node, [s for k in node.keys if isinstance(k, ast.Tuple) for s in _literals(k)]
        elif isinstance(node, ast.Set):
            yield node, _literals(node)
        elif isinstance(node, ast.Call) and getattr(node.func, "id", None) in {"frozenset", "set"}:
            yield node, _literals(node)


def offenders() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path in ALLOWED or {"methods", "at2"} & set(path.relative_to(PACKAGE).parts):
            continue
        for node, literals in _decisions(ast.parse(path.read_text(encoding="utf-8"))):
            named = sorted(set(literals) & NAMES)
            if named:
                found.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno} compares or tabulates {named}")
    return found


def test_no_string_literal_naming_a_method_or_model_decides_behaviour():
    assert offenders() == []
