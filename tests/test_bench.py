"""The benchmark harness, on fake benchmark modules (the real ones are too slow for tests)."""

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

import capstone
from capstone.apps import bench
from capstone.apps import cli
from capstone.errors import MissingFileError

RUNNER = Path(__file__).resolve().parents[1] / "benchmarks" / "run.py"


@pytest.fixture(scope="module")
def run():
    spec = importlib.util.spec_from_file_location("benchmarks_run", RUNNER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_bench(folder, name, body):
    (folder / f"bench_{name}.py").write_text(textwrap.dedent(body))


@pytest.fixture
def benches(tmp_path):
    write_bench(tmp_path, "fast", """
        def rows():
            return [{"stage": "fast: embed", "baseline": 32000.0, "ours": 400000.0,
                     "ratio": 12.5, "unit": "captions/s", "target": 10, "note": "all captions"}]
    """)
    write_bench(tmp_path, "broken", """
        def rows():
            raise RuntimeError("no data here")
    """)
    return tmp_path


def test_modules_are_found_by_name(run, benches):
    assert run.bench_names(benches) == ["broken", "fast"]


def test_table_has_a_header_and_one_line_per_row(run, benches):
    rows = run.run(folder=benches)
    table = run.format_table(rows).splitlines()
    assert table[0].split() == ["stage", "baseline", "ours", "unit", "ratio", "target", "note"]
    assert len(table) == 1 + len(rows) == 3
    broken, fast = table[1:]
    assert broken.startswith("broken") and "FAILED: RuntimeError: no data here" in broken
    assert fast.split()[:7] == ["fast:", "embed", "32,000", "400,000", "captions/s", "12.5x", "10"]


def test_a_failing_module_does_not_stop_the_others_and_fails_the_run(run, benches, capsys):
    assert run.main([], folder=benches) == 1
    out = capsys.readouterr().out
    assert "fast: embed" in out and "FAILED" in out


def test_only_runs_one_module_and_writes_json(run, benches, tmp_path, capsys):
    path = tmp_path / "out" / "rows.json"
    assert run.main(["--only", "fast", "--json", str(path)], folder=benches) == 0
    rows = json.loads(path.read_text())
    assert [row["stage"] for row in rows] == ["fast: embed"]
    assert rows[0]["ratio"] == 12.5 and rows[0]["module"] == "fast"
    assert "broken" not in capsys.readouterr().out


def test_an_unknown_module_is_named_with_the_choices(run, benches, capsys):
    assert run.main(["--only", "nope"], folder=benches) == 2
    assert "no benchmark 'nope': choose one of broken, fast" in capsys.readouterr().err


def test_a_ratio_below_its_target_fails_the_run(run, tmp_path, capsys):
    write_bench(tmp_path, "slow", """
        def rows():
            return [{"stage": "slow", "baseline": 1.0, "ours": 2.0, "ratio": 2.0,
                     "unit": "items/s", "target": 10}]
    """)
    assert run.main([], folder=tmp_path) == 1
    assert "MISSED TARGET" in capsys.readouterr().out


def test_a_row_without_the_required_keys_is_a_failure(run, tmp_path):
    write_bench(tmp_path, "sloppy", """
        def rows():
            return [{"stage": "sloppy", "ours": 2.0}]
    """)
    [row] = run.run(folder=tmp_path)
    assert "baseline" in row["error"] and run.missed_target(row)


def test_cli_bench_reports_an_unknown_module(capsys):
    assert cli.main(["bench", "--only", "no-such-benchmark"]) == 2
    assert "choose one of" in capsys.readouterr().err


def test_cli_bench_says_where_the_benchmarks_are_missing(monkeypatch, tmp_path):
    monkeypatch.setattr(capstone, "__file__", str(tmp_path / "site" / "capstone" / "__init__.py"))
    with pytest.raises(MissingFileError, match="source repository"):
        bench.benchmarks_runner()
