"""The class report: what one student and a class of 30 cost, measured on what ships.

Data: a COCO-sized folder made by the project's generator (``python -m capstone sample --out DIR
--images 82783``: 82,783 images, about 414,000 captions), read through the ``coco`` code path
with GloVe 50-d. ``$CAPSTONE_BENCH_COCO`` names such a folder (read-only is fine); without it
one is generated into a temporary folder first (a few minutes). Everything the runs write goes
to a temporary ``CAPSTONE_CACHE``.

Prepared as an instructor does before class (README, "For instructors"): ``capstone data``,
``capstone train --preset class``, ``capstone search "a red boat"`` (the database). Then:

train             ``python -m capstone train --epochs 1`` with the default preset (another
                  ``--out``): peak RSS against the budget of a student's share (700 MB).
notebook NN       each notebook as shipped, run top to bottom by ``python -m capstone.notebooks
                  run`` in a fresh kernel: the peak RSS of the largest process (the kernel), the
                  CPU seconds of the runner and its kernel, and the wall time. Budget: 800 MB;
                  notebook 04 also 120 s of wall time on 2 cores (with other work running, CPU
                  seconds say more: both are printed).
the app           :func:`capstone.apps.loadtest.load_test` with 30 visitors (the class), 3
                  queries each: p95 page ready (budget 3 s), p95 search (1 s), the memory of the
                  server and all kernels (4 GB), and one visitor more refused with the full page.

Each row's ``ratio`` is budget / measured (higher is better, at least 1 meets the budget), with
the budget as ``baseline``: these are budgets of a student's laptop share and of a class, which
issue 19 sets, not a speed-up. The report (``build/class-report.md``, also printed to stderr)
holds the README's "For instructors" tables. Run alone: ``python benchmarks/bench_class.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
REPORT = ROOT / "build" / "class-report.md"
N_IMAGES = 82_783
TRAIN_BUDGET_MB, NOTEBOOK_BUDGET_MB, NOTEBOOK_04_BUDGET_S = 700, 800, 120
PAGE_BUDGET_S, SEARCH_BUDGET_S, APP_BUDGET_MB = 3.0, 1.0, 4096
CLASS_SIZE, QUERIES = 30, 3


def measured(command: list[str], environment: dict) -> dict:
    """Run ``command``; its wall and CPU seconds and the peak RSS (MB) of its largest process.

    A wrapper process runs it and reads ``RUSAGE_CHILDREN`` (the command and every process it
    waited for, such as a notebook's kernel), as ``/usr/bin/time -v`` does.
    """
    wrapper = ("import json, resource, subprocess, sys, time; start = time.perf_counter(); "
               "done = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL); "
               "usage = resource.getrusage(resource.RUSAGE_CHILDREN); "
               "print(json.dumps([time.perf_counter() - start, usage.ru_utime + usage.ru_stime, "
               "usage.ru_maxrss / 1024, done.returncode]))")
    result = subprocess.run([sys.executable, "-c", wrapper, *command], capture_output=True,
                            text=True, env=environment, check=True, cwd=ROOT)
    wall, cpu, peak, status = json.loads(result.stdout.splitlines()[-1])
    if status != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({status}):\n{result.stderr[-2000:]}")
    return {"wall_s": wall, "cpu_s": cpu, "peak_mb": peak}


def budget_row(stage: str, budget: float, ours: float, unit: str, note: str) -> dict:
    return {"stage": stage, "baseline": budget, "ours": round(ours, 3), "unit": unit,
            "ratio": round(budget / ours, 3), "target": 1.0, "note": f"budget; {note}"}


def coco_folder(temporary: Path, environment: dict) -> Path:
    """``$CAPSTONE_BENCH_COCO``, else a COCO-sized folder generated now."""
    given = os.environ.get("CAPSTONE_BENCH_COCO")
    if given:
        return Path(given)
    folder = temporary / "coco"
    subprocess.run([sys.executable, "-m", "capstone", "sample", "--out", str(folder),
                    "--images", str(N_IMAGES)], check=True, env=environment, cwd=ROOT,
                   stdout=subprocess.DEVNULL)
    return folder


def coco_environment(temporary: Path) -> dict:
    """The environment of every run: this checkout first on the path, the COCO-sized folder
    (:func:`coco_folder`), a cache in ``temporary`` and no ``CAPSTONE_MODEL``."""
    environment = {**os.environ, "CAPSTONE_DATASET": "coco",
                   "CAPSTONE_CACHE": str(temporary / "cache"),
                   "PYTHONPATH": os.pathsep.join(
                       filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    environment.pop("CAPSTONE_MODEL", None)
    environment["CAPSTONE_DATA_DIR"] = str(coco_folder(temporary, environment))
    return environment


def prepare_class(environment: dict) -> tuple[dict, dict]:
    """What an instructor runs before class: the first read, ``train --preset class`` and a
    search (the database); the first two measured."""
    capstone = [sys.executable, "-m", "capstone"]
    first_read = measured([*capstone, "data"], environment)
    prepared = measured([*capstone, "train", "--preset", "class"], environment)
    measured([*capstone, "search", "a red boat"], environment)
    return first_read, prepared


def notebook_rows(environment: dict, notebooks: list[Path]) -> tuple[list[dict], list[str]]:
    """Each notebook as shipped, top to bottom in a fresh kernel: budget rows and a Markdown
    table (wall, CPU, peak RSS, the load average before and after)."""
    rows = []
    lines = ["| notebook | wall | CPU | peak RSS | load before / after |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as executed:
        for notebook in notebooks:
            name, before = notebook.stem, load_average()
            try:  # a generous cell timeout: the machine may be shared
                run = measured([sys.executable, "-m", "capstone.notebooks", "run", "--timeout",
                                "3600", "--out", executed, str(notebook)], environment)
            except RuntimeError as error:
                lines.append(f"| {name} | failed | | | {before} / {load_average()} |")
                rows.append({"stage": f"notebook {name}", "baseline": NOTEBOOK_BUDGET_MB,
                             "ours": None, "ratio": None, "unit": "MB",
                             "error": str(error).splitlines()[-1][:300]})
                continue
            over = run["peak_mb"] > NOTEBOOK_BUDGET_MB or (
                name.startswith("04") and run["wall_s"] > NOTEBOOK_04_BUDGET_S)
            lines.append(f"| {name} | {_clock(run['wall_s'])} | {_clock(run['cpu_s'])} | "
                         f"{run['peak_mb']:,.0f} MB{' (over budget)' if over else ''} | "
                         f"{before} / {load_average()} |")
            print(lines[-1], file=sys.stderr, flush=True)
            rows.append(budget_row(f"notebook {name}: peak RSS", NOTEBOOK_BUDGET_MB,
                                   run["peak_mb"], "MB",
                                   f"{run['wall_s']:.0f} s wall, {run['cpu_s']:.0f} s CPU"))
            if name.startswith("04"):
                rows.append(budget_row(f"notebook {name}: wall time", NOTEBOOK_04_BUDGET_S,
                                       run["wall_s"], "s", f"{run['cpu_s']:.0f} s CPU"))
    return rows, lines


def class_rows(environment: dict, app_only: bool = False) -> tuple[list[dict], list[str]]:
    """Every row and the report's lines, on the prepared folder of ``environment``
    (``app_only``: prepared as before class, then the app's rows only)."""
    capstone = [sys.executable, "-m", "capstone"]
    first_read, prepared = prepare_class(environment)
    if app_only:
        rows, report = app_rows(environment)
        return rows, [*before_class_lines(first_read, prepared, None), "", *report]
    out = str(Path(environment["CAPSTONE_CACHE"]) / "default-1-epoch.npz")
    measured([*capstone, "train", "--epochs", "1", "--out", out], environment)  # warm caches
    trained = measured([*capstone, "train", "--epochs", "1", "--out", out], environment)
    rows = [budget_row("train --epochs 1 (default preset): peak RSS", TRAIN_BUDGET_MB,
                       trained["peak_mb"], "MB",
                       f"{trained['wall_s']:.0f} s wall, {trained['cpu_s']:.0f} s CPU")]
    notebooks = sorted((ROOT / "notebooks").glob("[0-9]*.ipynb")) + [ROOT / "notebooks" /
                                                                     "app.ipynb"]
    notebook, lines = notebook_rows(environment, notebooks)
    rows += notebook
    measured([*capstone, "search", "a red boat"], environment)  # notebook 4 saved a new model
    app, app_report = app_rows(environment)
    rows += app
    report = [*before_class_lines(first_read, prepared, trained), "",
              "## Each notebook as shipped (peak RSS of its kernel)", "", *lines, "", *app_report]
    return rows, report


def before_class_lines(first_read: dict, prepared: dict, trained: dict | None) -> list[str]:
    """The report's lines on preparing a class (``trained``: the default's epoch, if run)."""
    lines = [
        "## Before class (COCO-sized folder, 82,783 images, GloVe 50-d)", "",
        f"- `python -m capstone data` (first read, caches): {first_read['wall_s']:.0f} s wall, "
        f"{first_read['cpu_s']:.0f} s CPU, {first_read['peak_mb']:,.0f} MB.",
        f"- `python -m capstone train --preset class`: {_clock(prepared['wall_s'])} wall, "
        f"{_clock(prepared['cpu_s'])} CPU, {prepared['peak_mb']:,.0f} MB."]
    if trained is not None:
        lines.append(f"- `python -m capstone train --epochs 1` (default preset, caches warm): "
                     f"{trained['wall_s']:.0f} s wall, {trained['cpu_s']:.0f} s CPU, "
                     f"{trained['peak_mb']:,.0f} MB peak.")
    return lines


def app_rows(environment: dict) -> tuple[list[dict], list[str]]:
    """The app's rows and report lines: :func:`capstone.apps.loadtest.load_test` with a class,
    the server started with ``environment``."""
    from capstone.apps.loadtest import load_test

    saved = dict(os.environ)
    os.environ.update(environment)
    load = os.getloadavg()[0]
    try:
        app = load_test(visitors=CLASS_SIZE, queries=QUERIES)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    slowest = ", ".join(f"{query!r} {seconds:.2f} s" for seconds, query, _ in
                        app["search_slowest"])
    note = (f"{CLASS_SIZE} visitors arriving 0.5 s apart, {app['queries']} queries while all "
            f"are connected, {app['failures']} unanswered; server CPU {app['cpu_s']:.0f} s over "
            f"{app['wall_s']:.0f} s")
    rows = [
        budget_row("app, 30 visitors: p95 page ready", PAGE_BUDGET_S, app["page_ready_p95_s"],
                   "s", note),
        budget_row("app, 30 visitors: p95 search", SEARCH_BUDGET_S, app["search_p95_s"], "s",
                   note),
        budget_row("app, 30 visitors: server + kernels, PSS", APP_BUDGET_MB,
                   app["memory_pss_mb"], "MB", f"{app['kernels']} kernels; RSS sum "
                   f"{app['memory_rss_mb']:,} MB (shared pages counted in each)"),
        {"stage": "app: visitor 31 refused (full page), no kernel", "baseline": 1,
         "ours": 1 if app["one_more_status"] == 503 and app["one_more_full_page"]
         and app["kernels_started_by_refused"] == 0 else 0, "unit": "yes", "target": 1.0,
         "ratio": 1.0 if app["one_more_status"] == 503 and app["one_more_full_page"]
         and app["kernels_started_by_refused"] == 0 else 0.0,
         "note": f"status {app['one_more_status']}; foreign Host / Origin / Sec-Fetch-Site: "
                 f"{sorted(app['refused_statuses'].values())}; server warnings: "
                 f"{len(app['warnings'])}"},
    ]
    report = [
        f"## The app for a class ({CLASS_SIZE} visitors on one server)", "",
        "| | value |", "|---|---|",
        f"| page ready, p50 / p95 / max | {app['page_ready_p50_s']:.2f} / "
        f"{app['page_ready_p95_s']:.2f} / {app['page_ready_max_s']:.2f} s |",
        f"| visits or searches unanswered | {app['failures']} |",
        f"| search, p50 / p95 / max ({app['queries']} queries) | {app['search_p50_s']:.2f} / "
        f"{app['search_p95_s']:.2f} / {app['search_max_s']:.2f} s |",
        f"| server and {app['kernels']} kernels, PSS (RSS sum) | {app['memory_pss_mb']:,} MB "
        f"({app['memory_rss_mb']:,} MB) |",
        f"| visitor {CLASS_SIZE + 1} | HTTP {app['one_more_status']}, "
        f"{'the full page' if app['one_more_full_page'] else 'no full page'}, "
        f"{app['kernels_started_by_refused']} kernels started |",
        f"| foreign Host, cross-site Origin, Sec-Fetch-Site | "
        f"{', '.join(map(str, app['refused_statuses'].values()))} |",
        f"| server CPU during the class | {app['cpu_s']:.0f} s over {app['wall_s']:.0f} s |",
        f"| load average (1 min) before / after the class | {load:.1f} / "
        f"{os.getloadavg()[0]:.1f} |",
        f"| slowest searches | {slowest} |",
    ]
    return rows, report


def _clock(seconds: float) -> str:
    return f"{seconds:.1f} s" if seconds < 60 else f"{int(seconds // 60)}:{seconds % 60:04.1f}"


def load_average() -> str:
    return ", ".join(f"{value:.1f}" for value in os.getloadavg())


def rows(app_only: bool = False) -> list[dict]:
    """Every row (see the module docstring); writes and prints the class report.

    ``app_only`` (``python benchmarks/bench_class.py --app-only``): the folder prepared as before
    class, then only the app's rows (a few minutes, where every notebook takes an hour here).
    """
    with tempfile.TemporaryDirectory() as temporary:
        environment = coco_environment(Path(temporary))
        started = time.perf_counter()
        found, report = class_rows(environment, app_only)
    command = ("python benchmarks/bench_class.py --app-only" if app_only
               else "python benchmarks/run.py --only class")
    header = [f"# Class report (`{command}`, "
              f"{time.perf_counter() - started:.0f} s)", "",
              f"Machine: {os.cpu_count()} cores, load average {load_average()} at the end.", ""]
    text = "\n".join(header + report) + "\n"
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    REPORT.write_text(text, encoding="utf-8")
    print(text, file=sys.stderr)
    return found


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    from run import format_table

    print(format_table(rows(app_only="--app-only" in sys.argv[1:])))
