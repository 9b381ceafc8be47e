"""The Milvus index against a real engine, Milvus Lite (a local .db, never a mock)."""

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytest.importorskip("pymilvus")
pytest.importorskip("milvus_lite")

from capstone.search.database import SearchDatabase  # noqa: E402
from capstone.search.ann import build_index, use_index  # noqa: E402
from capstone.search.milvus import MilvusError, MilvusIndex  # noqa: E402

from test_database import tiny_dataset, tiny_model  # noqa: E402


def unit_rows(n, dim, seed=0):
    rows = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def listening_ports(pid):
    """(address, port) of every TCP socket process ``pid`` listens on, from /proc/net."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as file:
            for line in file.readlines()[1:]:
                fields = line.split()
                if fields[3] == "0A" and fields[9] in inodes:  # 0A: LISTEN
                    address, port = fields[1].split(":")
                    found.append((address, int(port, 16)))
    return found


LOOPBACK = {"0100007F", "0000000000000000FFFF00000100007F", "00000000000000000000000001000000"}


@pytest.fixture(scope="module")
def sample():
    dataset = tiny_dataset(n_images=300, seed=2)
    return dataset, tiny_model(dataset)


def test_milvus_answers_text_dedup_why_and_image_queries_as_exact_search(sample, tmp_path):
    dataset, model = sample
    exact = SearchDatabase.build(model, dataset)
    milvus = use_index(SearchDatabase.build(model, dataset), "milvus", uri=str(tmp_path / "a.db"))
    try:
        assert isinstance(milvus.index, MilvusIndex) and milvus.index.embeddings is None
        for text, options in [("a red boat", {}), ("a photo of a puppy", {"dedup": 0.5}),
                              ("green -vehicle", {}), ("at night", {"image": [11, 18]})]:
            ours, expected = milvus.search(text, 5, **options), exact.search(text, 5, **options)
            assert [r["image_id"] for r in ours.results] == [r["image_id"] for r in expected.results]
            for got, want in zip(ours.results, expected.results):
                assert got["score"] == pytest.approx(want["score"], abs=1e-5)
                assert got["captions"] == want["captions"]
                assert got["why"] == pytest.approx(want["why"], abs=1e-5)
                assert sum(got["why"].values()) == pytest.approx(got["score"], abs=1e-4)
    finally:
        milvus.index.close()


def test_the_lite_server_listens_on_loopback_only_and_close_stops_it_and_cleans_up():
    index = build_index(unit_rows(200, 16), "milvus")  # no URI: a temporary .db
    folder = os.path.dirname(index.uri)
    assert os.path.isdir(index.uri) and os.path.basename(folder).startswith("capstone-milvus-")
    listening = listening_ports(os.getpid())
    assert listening and all(address in LOOPBACK for address, _ in listening)
    index.close()
    assert not os.path.exists(folder) and listening_ports(os.getpid()) == []
    index.close()  # twice is harmless


def test_a_collection_holding_these_embeddings_is_reused_and_other_ones_replaced(tmp_path):
    uri, rows = str(tmp_path / "shared.db"), unit_rows(500, 16)
    with build_index(rows, "milvus", uri=uri, collection="images_a") as first:
        assert not first.reused and set(first.seconds) == {"insert", "index"}
    with build_index(rows, "milvus", uri=uri, collection="images_a") as again:
        assert again.reused and again.seconds == {}
        assert again.search(rows[42], 1)[0].tolist() == [42]
    changed = rows.copy()
    changed[42] = -changed[42]
    with build_index(changed, "milvus", uri=uri, collection="images_a") as replaced:
        assert not replaced.reused and replaced.search(rows[42], 1)[0].tolist() != [42]


def test_after_images_are_added_the_next_process_reuses_the_grown_collection(tmp_path):
    uri, rows = str(tmp_path / "grown.db"), unit_rows(300, 16)
    with build_index(rows[:200], "milvus", uri=uri) as first:
        first.add(rows[200:], rows)
        assert len(first) == 300 and first.search(rows[250], 1)[0].tolist() == [250]
    with build_index(rows, "milvus", uri=uri) as again:
        assert again.reused and again.search(rows[299], 1)[0].tolist() == [299]


def test_milvus_uri_comes_from_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CAPSTONE_MILVUS_URI", str(tmp_path / "from-env.db"))
    with build_index(unit_rows(50, 8), "milvus") as index:
        assert index.uri == str(tmp_path / "from-env.db")
    assert (tmp_path / "from-env.db").is_dir()  # a named .db stays, for the next process


def test_a_second_process_on_the_same_lite_file_gets_one_line_saying_what_to_do(tmp_path):
    uri = str(tmp_path / "busy.db")
    code = textwrap.dedent(f"""
        import numpy as np
        from capstone.search.ann import build_index
        try:
            build_index(np.eye(4, dtype=np.float32), "milvus", uri={uri!r})
        except Exception as error:
            print(type(error).__name__, error)
    """)
    with build_index(unit_rows(20, 4), "milvus", uri=uri):
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                timeout=120)
    assert result.stdout.count("\n") == 1 and result.stderr == ""
    assert result.stdout.startswith("MilvusError cannot open the Milvus Lite database")
    assert "one process per .db" in result.stdout and "CAPSTONE_MILVUS_URI=http://" in result.stdout


def test_bad_settings_are_one_clear_line(tmp_path):
    rows = unit_rows(30, 8)
    with pytest.raises(ValueError, match="a Milvus Lite path ending in .db or a server's"):
        build_index(rows, "milvus", uri=str(tmp_path / "images.sqlite"))
    with pytest.raises(ValueError, match="index_type must be one of HNSW, IVF_FLAT"):
        build_index(rows, "milvus", uri=str(tmp_path / "x.db"), index_type="IVF_PQ")
    with pytest.raises(ValueError, match="letters, digits and _"):
        build_index(rows, "milvus", uri=str(tmp_path / "x.db"), collection="my images")
    with pytest.raises(ValueError, match="has no parameter 'rerank'"):
        build_index(rows, "milvus", rerank=3)


def test_an_unreachable_server_is_one_line(monkeypatch):
    monkeypatch.setenv("CAPSTONE_MILVUS_URI", "http://127.0.0.1:9")  # discard port: nothing there
    with pytest.raises(MilvusError, match=r"^cannot reach Milvus at http://127.0.0.1:9 .*server "
                                          "runs"):
        build_index(unit_rows(10, 4), "milvus", connect_timeout=2)


@pytest.mark.parametrize("index_type", ["IVF_FLAT", "FLAT"])
def test_other_index_types_find_the_exact_top_10(index_type, tmp_path):
    rows = unit_rows(2000, 16, seed=3)
    exact = build_index(rows, "exact")
    with build_index(rows, "milvus", uri=str(tmp_path / "t.db"), index_type=index_type,
                     nprobe=45) as index:
        for query in unit_rows(20, 16, seed=4):
            found, scores = index.search(query, 10)
            expected, expected_scores = exact.search(query, 10)
            assert found.tolist() == expected.tolist()
            np.testing.assert_allclose(scores, expected_scores, atol=1e-5)


def test_the_command_line_answers_from_milvus_when_capstone_milvus_uri_is_set(
        tmp_path, monkeypatch, capsys):
    import json

    from capstone.apps.cli import main
    from capstone.data.dataset import read_dataset
    from capstone.pipeline.prepared import open_database
    from test_database import trained_sample

    folder, model_path = trained_sample()
    for name, value in {"CAPSTONE_CACHE": tmp_path / "cache", "CAPSTONE_DATA_DIR": folder,
                        "CAPSTONE_MODEL": model_path, "CAPSTONE_DATASET": "coco"}.items():
        monkeypatch.setenv(name, str(value))

    def search(*argv):
        assert main(["search", "--json", "--k", "5", *argv]) == 0
        return json.loads(capsys.readouterr().out)

    dataset = read_dataset(folder, "coco")
    first = int(dataset.image_ids[0])
    queries = [["a red boat"], ["--dedup", "a dog on the grass"], ["--image", str(first), "night"]]
    expected = [search(*query) for query in queries]  # exact search in memory
    monkeypatch.setenv("CAPSTONE_MILVUS_URI", str(tmp_path / "class.db"))
    assert isinstance(open_database().index, MilvusIndex)
    for query, want in zip(queries, expected):
        got = search(*query)
        assert [r["image_id"] for r in got] == [r["image_id"] for r in want]
        for mine, theirs in zip(got, want):
            assert mine["score"] == pytest.approx(theirs["score"], abs=1e-5)
            assert mine["why"] == pytest.approx(theirs["why"], abs=1e-5)
    np.savez(tmp_path / "new.npz", image_ids=[10**9], features=dataset.features_of([first]))
    assert main(["add", "--features", str(tmp_path / "new.npz")]) == 0
    capsys.readouterr()
    assert main(["similar", "--json", "--k", "2", str(10**9)]) == 0
    assert [r["image_id"] for r in json.loads(capsys.readouterr().out)] == [10**9, first]
