"""The package's shape: no import cycles (nested imports included), a small core in reading order."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "capstone"

def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)

def imported_modules(path: Path, modules: set) -> set:
    """Every capstone module ``path`` imports, at any depth of the file (functions too)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found

def import_graph() -> dict:
    paths = sorted(PACKAGE.rglob("*.py"))
    modules = {module_name(path) for path in paths}
    return {module_name(path): imported_modules(path, modules) for path in paths}

def find_cycle(graph: dict):
    """One import cycle as a list of modules, or ``None``."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None

def test_the_package_has_no_import_cycle_nested_imports_included():
    graph = import_graph()
    assert "capstone.data.dataset" in graph and "capstone.data.glove" in graph["capstone.data.dataset"]
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))

def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None

def reading_order() -> list:
    """The ``capstone/<name>.py`` files the README's "Reading order" section lists, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reading order", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(capstone/[\w/]+\.py)`", section)

def core_modules() -> list:
    return [module_name(ROOT / path) for path in reading_order()]

def test_the_readme_lists_the_core_in_reading_order_within_1200_lines():
    files = reading_order()
    assert files[:2] == ["capstone/course/text.py", "capstone/course/image.py"], files
    lines = {path: len((ROOT / path).read_text(encoding="utf-8").splitlines()) for path in files}
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path, count in lines.items():  # the counts the README states are the files' own
        assert re.search(rf"`{re.escape(path)}`[^\n]*\b{count}\b", readme), (path, count)
    assert sum(lines.values()) <= 1200, lines

def test_the_core_holds_no_command_line_no_sample_and_no_pickles():
    graph = import_graph()
    for module in core_modules():
        source = (ROOT / (module.replace(".", "/") + ".py")).read_text(encoding="utf-8")
        assert not re.search(r"import (argparse|pickle)|pickle\.|add_argument", source), module
        assert not any(name.startswith("capstone.sample") for name in graph[module]), module
        assert "capstone.apps.cli" not in graph[module], module
