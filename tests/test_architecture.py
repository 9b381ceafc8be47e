"""The package's shape, computed from the code: no import cycles (nested imports included), a core
folder whose whole import closure is small, no two folders importing each other, no private
names imported across modules, docs/architecture.md's folder map and the README's reading order."""

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

CORE = "capstone.course"
TAUGHT = ("text", "image", "triples", "train", "database", "evaluate")  # notebooks 2-5
CLOSURE_LIMIT = 1500  # lines: the core and everything it imports inside the package
SHARED = {"capstone", "capstone.errors", "capstone.files"}  # what every folder may import


def folder_of(module: str) -> str:
    """``capstone.data.glove`` -> ``capstone.data``; a top-level module is its own node."""
    parts = module.split(".")
    if len(parts) >= 3 or (PACKAGE / parts[-1]).is_dir():
        return ".".join(parts[:2])
    return module


def source_path(module: str) -> Path:
    path = ROOT / module.replace(".", "/")
    return path / "__init__.py" if path.is_dir() else path.with_suffix(".py")


def closure(graph: dict, start) -> set:
    """Every module ``start`` imports, directly or not, with the packages Python runs on the way
    (``capstone.course.text`` runs ``capstone/__init__.py`` and ``course/__init__.py``)."""
    seen, todo = set(), list(start)
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        parents = [".".join(module.split(".")[:i]) for i in range(1, module.count(".") + 1)]
        todo += [name for name in [*graph.get(module, ()), *parents] if name in graph]
    return seen


def core_modules() -> list:
    return sorted(name for name in import_graph() if folder_of(name) == CORE)


def lines_of(modules) -> int:
    return sum(len(source_path(m).read_text(encoding="utf-8").splitlines()) for m in modules)


def test_the_cores_whole_import_closure_is_small_and_stays_in_its_folder():
    graph = import_graph()
    reached = closure(graph, core_modules())
    outside = sorted(m for m in reached if folder_of(m) != CORE and m not in SHARED)
    assert not outside, f"the core imports {outside}: pass such things in as parameters"
    assert "capstone.course.text" in reached and "capstone.course.token_rows" in reached
    assert lines_of(reached) <= CLOSURE_LIMIT, (lines_of(reached), sorted(reached))
    document = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    assert f"({lines_of(reached):,} now;" in document, f"docs/architecture.md: {lines_of(reached):,}"


def test_the_closure_follows_nested_imports_to_the_end():
    graph = {"capstone.course.a": {"capstone.data.b"}, "capstone.data.b": {"capstone.sample.c"},
             "capstone.sample.c": set(), "capstone": set(), "capstone.course": set(),
             "capstone.data": set(), "capstone.sample": set()}
    assert closure(graph, ["capstone.course.a"]) >= {"capstone.sample.c", "capstone.data"}


def folder_graph(graph: dict) -> dict:
    """Which folders (and top-level modules) each one imports."""
    folders = {}
    for module, imported in graph.items():
        edges = folders.setdefault(folder_of(module), set())
        edges |= {folder_of(m) for m in imported} - {folder_of(module)} - SHARED
    return folders


def test_no_two_folders_import_each_other():
    folders = folder_graph(import_graph())
    ties = sorted((a, b) for a in folders for b in folders[a] if a < b and a in folders.get(b, ()))
    assert not ties, f"folders importing each other: {ties}"
    assert not folders[CORE], f"the core imports {sorted(folders[CORE])}"
    for folder in ("capstone.further", "capstone.sample"):  # plugged in, never plugging in
        assert CORE not in {f for f, edges in folders.items() if folder in edges}


def test_no_module_imports_another_modules_private_names():
    modules = set(import_graph())
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("capstone"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.relative_to(ROOT)} imports {private} from {node.module}"
        assert module_name(path) in modules


def test_each_folders_docstring_says_what_it_may_import():
    folders = folder_graph(import_graph())
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        folder = module_name(init)
        text = " ".join(ast.get_docstring(ast.parse(init.read_text(encoding="utf-8"))).split())
        assert "may import" in text, f"{init.relative_to(ROOT)}: say what the folder may import"
        sentence = text.split("may import", 1)[1].split(". ")[0]
        if "every other folder" in sentence:
            continue
        allowed = {folder_of(m) for m in re.findall(r":mod:`(capstone\.\w+)", sentence)}
        assert folders[folder] <= allowed, f"{folder} imports {sorted(folders[folder] - allowed)}"


def documented_folder_graph() -> dict:
    """The "Who imports whom" block of docs/architecture.md: ``folder -> a, b`` per line."""
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    block = text.split("## Who imports whom", 1)[1].split("```", 2)[1]
    documented = {}
    for line in block.splitlines():
        if "->" in line:
            name, _, imported = line.partition("->")
            targets = imported.split("#")[0].replace("(nothing)", "")
            documented[f"capstone.{name.strip()}"] = {
                f"capstone.{t.strip()}" for t in targets.split(",") if t.strip()}
    return documented


def test_the_architecture_document_shows_the_real_folder_graph():
    real = {folder: edges for folder, edges in folder_graph(import_graph()).items()
            if folder not in SHARED}
    assert documented_folder_graph() == real, (
        "docs/architecture.md's 'Who imports whom' differs from the code: "
        + "; ".join(f"{f} -> {', '.join(sorted(e)) or '(nothing)'}"
                    for f, e in sorted(real.items())))


def reading_order() -> list:
    """The ``capstone/<name>.py`` files the README's "Reading order" section lists, in order."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Reading order", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"`(capstone/[\w/]+\.py)`", section)


def test_the_readme_lists_every_core_file_once_in_reading_order_with_its_line_count():
    files = reading_order()
    taught = [f"capstone/course/{name}.py" for name in TAUGHT]
    assert [path for path in files if path in taught] == taught, files  # the notebooks' order
    twice = [path for path in files if files.count(path) > 1]
    assert not twice, f"listed twice: {twice}"
    core = {str(source_path(m).relative_to(ROOT)) for m in core_modules()} - {
        "capstone/course/__init__.py"}
    missing, extra = sorted(core - set(files)), sorted(set(files) - core)
    assert not missing and not extra, f"missing {missing}; not core {extra}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for path in files:  # the counts the README states are the files' own
        count = len((ROOT / path).read_text(encoding="utf-8").splitlines())
        assert re.search(rf"`{re.escape(path)}` \({count} lines\)", readme), (path, count)
    total = lines_of(m for m in core_modules() if m != CORE)
    assert re.search(rf"\b{total:,} lines in all", readme), total


def test_the_core_holds_no_command_line_and_no_pickles():
    for module in core_modules():
        source = source_path(module).read_text(encoding="utf-8")
        assert not re.search(r"import (argparse|pickle)|pickle\.|add_argument", source), module
