"""One server for a class: the cap, the host and site checks, one training at a time, a small
load test (the full one, 30 visitors, is ``benchmarks/bench_class.py`` in ``make bench``)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from capstone.apps.loadtest import load_test, percentile
from capstone.apps.server import LOCAL_HOSTS, host_problem
from capstone.pipeline.prepared import training_lock


def request(host="127.0.0.1:8866", **headers):
    """What :func:`host_problem` reads of a tornado request."""
    headers = {key.replace("_", "-"): value for key, value in headers.items()}
    return SimpleNamespace(host=host, headers=headers)


@pytest.mark.parametrize("host", ["127.0.0.1:8866", "localhost:8866", "localhost", "[::1]:8866"])
def test_the_page_is_served_to_this_machine(host):
    assert host_problem(request(host), list(LOCAL_HOSTS)) is None
    same_site = request(host, Origin=f"http://{host}", Sec_Fetch_Site="same-origin")
    assert host_problem(same_site, list(LOCAL_HOSTS)) is None


@pytest.mark.parametrize("hostile", [
    request("evil.example"), request("evil.example:8866"), request("127.0.0.1.evil.example"),
    request(Origin="http://evil.example"), request(Origin="null"),
    request(Sec_Fetch_Site="cross-site"), request(Sec_Fetch_Site="same-site"),
])
def test_a_foreign_host_or_another_site_is_refused(hostile):
    problem = host_problem(hostile, list(LOCAL_HOSTS))
    assert problem and ("not served" in problem or "answers only" in problem)


def test_a_second_training_waits_for_the_first(tmp_path, capsys):
    model = tmp_path / "model.npz"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys, time
        from capstone.pipeline.prepared import training_lock
        with training_lock({str(model)!r}):
            print("holding", flush=True)
            time.sleep(2)
        """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "holding"
        started = time.monotonic()
        with training_lock(model) as waited:
            assert waited and time.monotonic() - started > 0.5
    finally:
        holder.wait(30)
    assert "waiting for it to finish" in capsys.readouterr().err
    with training_lock(model) as waited:  # nobody holds it now
        assert not waited


def test_percentile_is_the_nearest_rank():
    assert percentile([5, 1, 4, 2, 3], 50) == 3
    assert percentile(range(1, 101), 95) == 95
    assert percentile([], 95) is None


@pytest.fixture(scope="module")
def sample_model():
    """The sample's saved model (trained once when missing), so kernels load, not train."""
    from capstone.pipeline.prepared import load_or_train, open_database

    open_database(model=load_or_train(progress=False))


def test_a_small_class_is_served_and_one_more_visitor_is_refused(sample_model):
    found = load_test(visitors=3, queries=2, pool=2, gap=0.2, window=2.0)
    assert found["failures"] == 0, found["failure_examples"]  # every visit and search answered
    assert found["visitors"] == 3 and found["queries"] == 6
    assert found["page_ready_max_s"] > 0 and found["search_max_s"] > 0
    assert found["kernels"] == 3  # the pool never takes the total past the cap
    assert found["one_more_status"] == 503 and found["one_more_full_page"]
    assert found["refused_statuses"] == {"foreign_host": 403, "cross_site_origin": 403,
                                         "cross_site_fetch": 403}
    assert found["kernels_started_by_refused"] == 0
    assert found["warnings"] == []  # no "not trusted", no ping timeout, no kernel over TCP
