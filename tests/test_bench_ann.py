"""The ANN benchmark module at a tiny size, and the harness's recall column and recall targets."""

import importlib.util
import json
import textwrap
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load(name):
    spec = importlib.util.spec_from_file_location(name, BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def run():
    return load("run")


def test_bench_ann_rows_carry_ratio_and_recall_at_a_tiny_size():
    pytest.importorskip("faiss")
    bench = load("bench_ann")
    rows = bench.rows(n=3000, dim=32, queries=20)
    assert [row["stage"].split(": ")[1].split(" ")[0] for row in rows] == ["HNSW", "IVF-PQ",
                                                                          "Milvus"]
    for row in rows:
        assert {"stage", "baseline", "ours", "ratio", "unit", "recall", "note"} <= set(row)
        assert row["ratio"] > 0 and 0 <= row["recall"] <= 1
        assert "3,000 x 32" in row["note"]
    assert all("build" in row["note"] and row["index_bytes"] > 0 for row in rows[:2])
    milvus = rows[2]  # its rows live in Milvus Lite: inserting and indexing are timed apart
    assert milvus["insert_s"] > 0 and milvus["index_s"] > 0 and "on disk" in milvus["note"]
    json.dumps(rows)  # what run.py --json writes: plain numbers only


def test_the_ann_data_is_clustered_unit_rows_and_the_queries_are_new():
    bench = load("bench_ann")
    embeddings, queries = bench.make_data(n=2000, dim=16, queries=10)
    assert embeddings.shape == (2000, 16) and queries.shape == (10, 16)
    assert abs(float((embeddings**2).sum(axis=1).mean()) - 1) < 1e-5
    nearest = (queries @ embeddings.T).max(axis=1)
    assert 0.5 < nearest.min() and nearest.max() < 0.999  # near a cluster, but not in the database


def fake(folder, recall, recall_target=0.95):
    (folder / "bench_fake.py").write_text(textwrap.dedent(f"""
        def rows():
            return [{{"stage": "fake ann", "baseline": 40.0, "ours": 1.0, "ratio": 40.0,
                      "unit": "ms", "target": 10, "recall": {recall},
                      "recall_target": {recall_target}}}]
    """))


def test_the_table_shows_recall_and_the_json_keeps_it(run, tmp_path, capsys):
    fake(tmp_path, 0.971)
    path = tmp_path / "rows.json"
    assert run.main(["--json", str(path)], folder=tmp_path) == 0
    header, line = capsys.readouterr().out.splitlines()
    assert header.split() == ["stage", "baseline", "ours", "unit", "ratio", "target", "recall",
                              "note"]
    assert line.split()[5:10] == ["40x", "10", "0.971", "(>=", "0.95)"] and "MISSED" not in line
    assert json.loads(path.read_text())[0]["recall"] == 0.971


def test_a_recall_below_its_target_fails_the_run_even_when_the_ratio_is_met(run, tmp_path, capsys):
    fake(tmp_path, 0.8)
    assert run.main([], folder=tmp_path) == 1
    assert "MISSED TARGET" in capsys.readouterr().out
    assert run.missed_target({"ratio": 40, "target": 10, "recall_target": 0.9})
