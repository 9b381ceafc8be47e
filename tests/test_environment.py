"""environment.yml (the conda route) names everything pyproject.toml depends on."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def package_name(requirement: str) -> str:
    """The PEP 503 name at the start of a requirement: ``Foo_Bar>=1`` -> ``foo-bar``."""
    name = re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", requirement.strip()).group(0)
    return re.sub(r"[-_.]+", "-", name).lower()


def environment_dependencies(text: str) -> tuple[list, list]:
    """The conda and pip entries under ``dependencies:`` of an environment file (a tiny parser)."""
    conda, pip, section, pip_indent = [], [], None, None
    for line in text.splitlines():
        line = line.split(" #")[0].rstrip()
        if not line or line.lstrip().startswith("#"):
            continue
        if not line.startswith(" "):
            section = line.split(":")[0]
            continue
        item = re.match(r"(\s*)- (.+)", line)
        if section != "dependencies" or not item:
            continue
        indent, entry = len(item.group(1)), item.group(2).strip()
        if entry == "pip:":
            pip_indent = indent
        elif pip_indent is not None and indent > pip_indent:
            pip.append(entry)
        else:
            conda.append(entry)
    return conda, pip


def test_the_parser_reads_sections_and_pip_entries():
    text = "name: x\nchannels:\n  - conda-forge\ndependencies:\n  - numpy>=2  # note\n"
    text += "  - pip:\n      - My_Pkg==1\n      - -e .\n  - scipy\n"
    assert environment_dependencies(text) == (["numpy>=2", "scipy"], ["My_Pkg==1", "-e ."])
    assert package_name("My_Pkg.Extra>=1") == "my-pkg-extra"


def test_environment_names_every_dependency_of_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    required = [*project["dependencies"], *project["optional-dependencies"]["dev"]]
    conda, pip = environment_dependencies((ROOT / "environment.yml").read_text())
    named = {package_name(entry) for entry in conda + pip if not entry.startswith("-")}
    missing = sorted({package_name(requirement) for requirement in required} - named)
    assert not missing, f"add to environment.yml: {missing}"


def test_environment_is_python_311_named_capstone_and_installs_the_project():
    text = (ROOT / "environment.yml").read_text()
    conda, pip = environment_dependencies(text)
    assert re.search(r"^name: capstone$", text, re.MULTILINE)
    assert "python=3.11" in conda
    assert "-e .[dev]" in pip
    names = [package_name(entry) for entry in conda + pip if not entry.startswith("-")]
    assert len(names) == len(set(names)), "a package is named twice"
