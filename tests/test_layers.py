"""The package's data flow, read from its import statements: no import cycle, and no
module imports from a layer above its own (docs/architecture.md, Layers: passages > layout >
model > method > attribution > citations / pruning > report, service or integration)."""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "attribot_rag"

# Lowest first. A module may import from its own layer and the ones below it.
LAYERS = [
    {"errors", "ranking", "fastattn", "precision", "gguf_files"},
    {"sources", "models", "embeddings"},
    {"layout"},
    {"scoring"},
    {"at2"},
    {"methods"},
    {"result", "grounding"},
    {"citations", "pruning"},  # given an attributor, they use its methods (type hints only)
    {"report", "streaming"},
    {"attributor"},  # the one noun: its verbs are citations, pruning and streaming
    {"demo", "training", "evaluation", "index", "documents"},
    {"integration", "testing"},  # the framework integrations' shared glue (and its test stand-ins)
    {"__init__"},  # the public API: re-exports the layers below
    {"service", "batch", "cli", "__main__"},
]
LAYER_OF = {name: i for i, names in enumerate(LAYERS) for name in names}


def _module(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts = parts[:-1]  # a package is named by its folder
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path) -> set[str]:
    """Modules of the package that ``path`` imports (relative imports resolved)."""
    module = _module(path)
    if path.name == "__init__.py":
        package = [] if module == "__init__" else module.split(".")
    else:
        package = module.split(".")[:-1]
    found = set()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for block in [n for n in ast.walk(tree) if isinstance(n, ast.If) and _type_checking_only(n)]:
        block.body = []  # imports for type hints only: no data flows through them
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            elif (node.module or "").startswith("attribot_rag"):
                target = node.module[len("attribot_rag") :].lstrip(".")
            else:
                continue
            found.add(target or "__init__")
            for alias in node.names:  # "from . import loo" imports a module
                sub = f"{target}.{alias.name}" if target else alias.name
                if (PACKAGE / (sub.replace(".", "/") + ".py")).exists():
                    found.add(sub)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("attribot_rag"):
                    found.add(alias.name[len("attribot_rag") :].lstrip(".") or "__init__")
    found.discard(module)
    return found


def _graph() -> dict[str, set[str]]:
    return {_module(p): _imports(p) for p in sorted(PACKAGE.rglob("*.py"))}


def _layer(module: str) -> int:
    top = module.split(".")[0]
    assert top in LAYER_OF, f"attribot_rag.{module} is in no layer of tests/test_layers.py: add it where it belongs"
    return LAYER_OF[top]


def test_no_module_imports_from_a_higher_layer():
    upward = [
        f"{m} (layer {_layer(m)}) imports {d} (layer {_layer(d)})"
        for m, deps in _graph().items()
        for d in deps
        if _layer(d) > _layer(m)
    ]
    assert not upward, "imports against the data flow:\n" + "\n".join(upward)


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, set())):
            if state.get(d) == 1:
                return stack[stack.index(d) :] + [d]
            if state.get(d) is None and d in graph:
                cycle = visit(d)
                if cycle:
                    return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in graph:
        if state.get(m) is None:
            cycle = visit(m)
            assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_function_is_longer_than_80_lines_outside_the_cli_parser():
    """A function does one step; only the command line's parser lists every option."""
    long = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{_module(path)}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    assert [f for f in long if not f.startswith("cli.build_parser:")] == []
