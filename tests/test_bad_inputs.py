"""The bad-input corpus (issue 20): every hostile or broken file and value, fed to the command line.

Each case runs ``python -m capstone ...`` in a subprocess on a copy of a small dataset and model
with one thing broken, and must end in exit status 2 and exactly one line on stderr that names
the file or value (or, where the input can be repaired or ignored, in a correct result), never a
traceback, with the child's peak RSS at most twice the bad file's size plus 300 MB. The files
are small but declare huge sizes, so the whole corpus takes well under a minute.

``python tests/test_bad_inputs.py [PYTHONPATH [WORKERS]]`` prints every case's outcome as a
table, for the code at ``PYTHONPATH`` (default: this checkout), e.g. to compare a branch with
main (``git archive main | tar -x -C /tmp/main``), running ``WORKERS`` (default 4) at a time.
"""

from __future__ import annotations

import concurrent.futures
import hashlib
import json
import os
import pickle
import shutil
import struct
import subprocess
import sys
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
MB = 2**20
ALLOWANCE = 300 * MB  # the interpreter, NumPy and the command's own data
TIMEOUT = 90.0  # seconds before a case counts as hung (a FIFO that blocks open())
FEATURES, CAPTIONS = "resnet18_features.pkl", "captions_train2014.json"


@dataclass
class Case:
    """One bad input: the command, what its one line must name, the file that bounds memory."""

    row: str
    name: str
    argv: list
    named: str = ""
    status: int = 2
    file: Path | None = None
    env: dict = field(default_factory=dict)
    allowance: int = ALLOWANCE  # memory beyond twice the file's size
    progress: bool = False  # it trains: a line per epoch comes before the one error line
    check: object = None  # called with the Result; asserts more
    setup: object = None  # called just before the command runs (e.g. a FIFO's writer)


@dataclass
class Result:
    status: int
    out: str
    err: str
    peak: int  # bytes
    seconds: float

    @property
    def lines(self) -> list:
        return self.err.splitlines()


# -- files that declare more than they hold --------------------------------------------------------
def npy_header(shape, descr="<f8") -> bytes:
    """An ``.npy`` v1.0 header declaring ``shape`` (the data is left out)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": tuple(shape)}).encode()
    header += b" " * (-(10 + len(header) + 1) % 64) + b"\n"
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", len(header)) + header


def replace_member(path: Path, name: str, data: bytes, *, compress=False) -> None:
    """Rewrite the ``.npz`` at ``path`` with member ``name.npy`` holding ``data``."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    members[f"{name}.npy"] = data
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", method) as archive:
        for member, payload in members.items():
            archive.writestr(member, payload)


def add_inflating_member(path: Path, name: str, size: int) -> None:
    """Add a deflated member of ``size`` zero bytes (a few kB on disk) to the zip at ``path``."""
    chunk = bytes(MB)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as archive:
        with archive.open(name, "w", force_zip64=True) as member:
            for _ in range(size // MB):
                member.write(chunk)


class Reduce:
    """Pickles as ``function(*args)``: how a hostile features file declares an array."""

    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def npz_arrays(path: Path) -> dict:
    with np.load(path) as arrays:
        return {name: arrays[name] for name in arrays.files}


# -- the corpus -----------------------------------------------------------------------------------
def corpus(case_dir: Path, base: dict) -> list:
    """Every case, each with its own copy of the data under ``case_dir / name``."""
    cases = []

    def case(row, name, argv, **options):
        folder = case_dir / name
        data = folder / "data"
        shutil.copytree(base["data"], data, ignore=shutil.ignore_patterns("images"))
        shutil.copy(base["model"], folder / "model.npz")
        (folder / "cache" / "databases").mkdir(parents=True)  # as after the first search
        shutil.copy(base["database"], folder / "cache" / "databases")
        env = {"CAPSTONE_DATA_DIR": str(data), "CAPSTONE_DATASET": "coco",
               "CAPSTONE_CACHE": str(folder / "cache"), "CAPSTONE_MODEL": str(folder / "model.npz")}
        made = Case(row, name, argv, env=env, **options)
        made.folder, made.data = folder, data
        cases.append(made)
        return made

    # 1: a tiny pickle declaring a huge array of objects (or of floats)
    from numpy._core.multiarray import _reconstruct

    for name, value in [
        ("objects-reconstruct", {1: Reduce(_reconstruct, (np.ndarray, (200_000_000,), "O"))}),
        ("objects-ndarray", Reduce(np.ndarray, ((150_000_000,), "O"))),
        ("floats-reconstruct", {1: Reduce(_reconstruct, (np.ndarray, (10**12,), "f8"))}),
    ]:
        made = case("1", f"pickle-{name}", ["data"], named=FEATURES)
        (made.data / FEATURES).write_bytes(pickle.dumps(value, protocol=2))
        (made.data / "resnet18_features.npz").unlink()
        made.file = made.data / FEATURES
    # 2: a current features cache with NaN rows: rebuilt from the pickle, saying so
    made = case("2", "features-cache-nan", ["data", "--json"], status=0,
                named="resnet18_features.npz")
    cache = made.data / "resnet18_features.npz"
    arrays = npz_arrays(cache)
    arrays["features"][:5] = np.nan
    np.savez(cache, **arrays)  # its source stamp still names the pickle: current
    made.file = cache
    made.check = lambda result, n=len(arrays["image_ids"]): (
        json.loads(result.out)["images_with_features"] == n)
    # 3: a model with an extra member that inflates to 1 GiB: not read
    made = case("3", "model-extra-member", ["search", "--k", "3", "boat"], status=0)
    add_inflating_member(made.folder / "model.npz", "extra.npy", 1024 * MB)
    made.file = made.folder / "model.npz"
    # 4: a member header claiming 10**12 floats: the model is refused, the caches are rebuilt
    made = case("4", "model-huge-header", ["search", "boat"], named="model.npz")
    replace_member(made.folder / "model.npz", "image_weight", npy_header((10**6, 10**6)))
    made.file = made.folder / "model.npz"
    made = case("4", "features-cache-huge-header", ["data", "--json"], status=0,
                named="resnet18_features.npz")
    replace_member(made.data / "resnet18_features.npz", "features", npy_header((10**9, 512), "<f4"))
    made.file = made.data / "resnet18_features.npz"
    made = case("4", "database-huge-header", ["search", "--k", "3", "boat"], status=0,
                named="image database")
    database = made.folder / "cache" / "databases" / "coco-all.npz"
    replace_member(database, "embeddings", npy_header((10**12,), "<f4"))
    made.file = database
    # 5: captions JSON: deeply nested, an object bomb, far too large (sparse: no disk used)
    made = case("5", "captions-nested", ["data"], named=CAPTIONS)
    (made.data / CAPTIONS).write_bytes(b"[" * (4 * MB))
    made.file = made.data / CAPTIONS
    made = case("5", "captions-object-bomb", ["data"], named=CAPTIONS)
    (made.data / CAPTIONS).write_bytes(b"[" + b"{}," * (2 * MB) + b"{}]")
    made.file = made.data / CAPTIONS
    made = case("5", "captions-2gib", ["data"], named=CAPTIONS)
    with open(made.data / CAPTIONS, "r+b") as file:
        file.truncate(2 * 1024 * MB)
    made.file = made.data / CAPTIONS
    # 6 and 14: settings out of range are refused before training; the model stays as it was
    for name, argv, named in [
        ("temperature-0", ["--temperature", "0"], "temperature"),
        ("temperature-nan", ["--temperature", "nan"], "temperature"),
        ("margin-inf", ["--margin", "inf"], "margin"),
        ("hidden-1e9", ["--embedder", "mlp", "--hidden", "1000000000"], "hidden"),
        ("hidden-not-an-int", ["--hidden", "1e9"], "--hidden"),
    ]:
        row = "14" if name.startswith(("margin", "hidden")) else "6"
        made = case(row, f"train-{name}", ["train", "--epochs", "1", *argv], named=named)
        made.check = unchanged(made.folder / "model.npz")
    # 6: a run no better than untrained (every image alike) leaves the saved model as it was
    made = case("6", "train-no-better-than-untrained", ["train", "--epochs", "2"],
                named="left as it was", allowance=450 * MB, progress=True)  # it trains
    table = pickle.loads((made.data / FEATURES).read_bytes())
    (made.data / FEATURES).write_bytes(pickle.dumps({image_id: np.ones((1, 512), np.float32)
                                                     for image_id in table}))
    made.check = unchanged(made.folder / "model.npz")
    # 8: a GloVe zip whose member inflates to 64 MiB (ratio 1000): refused, nothing written
    made = case("8", "glove-zip-bomb", ["data"], named="glove.6B.50d.txt.w2v.zip")
    zip_path = made.data / "glove.6B.50d.txt.w2v.zip"
    with zipfile.ZipFile(zip_path, "w"):
        pass
    add_inflating_member(zip_path, "glove.6B.50d.txt.w2v", 64 * MB)
    made.file = zip_path
    made.check = lambda result, data=made.data: not (data / "glove.6B.50d.txt.w2v").exists()
    # 9: ids that are not integers, out of range or given twice
    vector = np.zeros((1, 512), np.float32)
    for name, table in [("inf", {float("inf"): vector}), ("2**70", {2**70: vector}),
                        ("113-and-str", {113: vector, "113": vector}),
                        ("float", {113.7: vector}), ("bool", {True: vector})]:
        made = case("9", f"pickle-key-{name}", ["data"], named=FEATURES)
        (made.data / FEATURES).write_bytes(pickle.dumps(table))
        made.file = made.data / FEATURES
    for name, value in [("float", 113.7), ("bool", True), ("string", "113")]:
        made = case("9", f"json-id-{name}", ["data"], named=CAPTIONS)
        coco = json.loads((made.data / CAPTIONS).read_text())
        coco["images"][0]["id"] = value
        (made.data / CAPTIONS).write_text(json.dumps(coco))
        made.file = made.data / CAPTIONS
    made = case("9", "json-id-twice", ["data"], named=CAPTIONS)
    coco = json.loads((made.data / CAPTIONS).read_text())
    coco["images"].append(dict(coco["images"][0]))
    (made.data / CAPTIONS).write_text(json.dumps(coco))
    made.file = made.data / CAPTIONS
    # 10: huge finite feature rows are left out; NaN or inf in a model file is refused
    made = case("10", "features-3e38", ["data", "--json"], status=0, named=FEATURES)
    table = pickle.loads((made.data / FEATURES).read_bytes())
    for image_id in sorted(table)[:3]:
        table[image_id] = np.full((1, 512), 3e38, np.float32)
    (made.data / FEATURES).write_bytes(pickle.dumps(table))
    made.file = made.data / FEATURES
    made.check = lambda result, n=len(table) - 3: (
        json.loads(result.out)["images_with_features"] == n)
    for name, member, value in [("weight-nan", "image_weight", np.nan),
                                ("idf-inf", "text_idf", np.inf)]:
        made = case("10", f"model-{name}", ["search", "boat"], named="model.npz")
        arrays = npz_arrays(made.folder / "model.npz")
        arrays[member] = arrays[member].copy()
        arrays[member].flat[0] = value
        np.savez(made.folder / "model.npz", **arrays)
        made.file = made.folder / "model.npz"
    # 11: captions with a lone surrogate print in plain text
    for command in (["search", "--k", "3", "--min-score", "-1", "boat"],  # every result: printed
                    ["similar", "--k", "3", str(base["image_id"])]):
        made = case("11", f"surrogate-{command[0]}", command, status=0)
        text = (made.data / CAPTIONS).read_text()
        (made.data / CAPTIONS).write_text(text.replace('"caption": "', '"caption": "\\ud800'))
        made.check = lambda result: "\\udc" in result.out or "\\ud8" in result.out
    # 12: a weight too large to be a number
    made = case("12", "weight-400-nines", ["search", "9" * 400 + ":boat red"], named="99999999")
    made = case("12", "weight-1e200", ["search", "1e200:boat"], named="1e200")
    # 13: --queries on a FIFO that nobody writes to
    made = case("13", "queries-fifo", ["search", "--queries", "QUERIES"], named="QUERIES")
    fifo = made.folder / "queries.fifo"
    os.mkfifo(fifo)
    made.argv = ["search", "--queries", str(fifo)]
    made.named = str(fifo)
    # 16: CAPSTONE_CACHE naming a file
    made = case("16", "cache-is-a-file", ["search", "boat"], named="CAPSTONE_CACHE")
    (made.folder / "cache-file").write_text("not a folder")
    made.env["CAPSTONE_CACHE"] = str(made.folder / "cache-file")
    # 20: sample --out into a folder holding course files; a count out of range
    made = case("20", "sample-over-course-files", ["sample", "--images", "5", "--out", "DATA"],
                named="")
    made.argv[-1] = made.named = str(made.data)
    (made.data / ".complete").unlink()  # not a sample's folder: the course's files
    made.check = unchanged(made.data / CAPTIONS)
    made = case("20", "sample-images-1e12", ["sample", "--images", str(10**12), "--out", "NEW"],
                named="1000000000000")
    made.argv[-1] = str(made.folder / "new-sample")
    return cases


def unchanged(path: Path):
    """A check that ``path`` still holds the bytes it holds now."""
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return lambda result: hashlib.sha256(path.read_bytes()).hexdigest() == digest


# -- running ----------------------------------------------------------------------------------------
#: Runs a command and writes its peak RSS (KiB, from ``os.wait4``) to the file named first. The
#: command is forked from this small process, not from pytest: a child's peak RSS counts the
#: pages of the process it was forked from, until it execs.
LAUNCHER = """
import os, subprocess, sys
process = subprocess.Popen(sys.argv[2:])
_, status, usage = os.wait4(process.pid, 0)
open(sys.argv[1], "w").write(str(usage.ru_maxrss))
sys.exit(os.waitstatus_to_exitcode(status) % 256)
"""


def run_case(case: Case, pythonpath: str) -> Result:
    """Run the case's command; its exit status, output and peak RSS."""
    env = {**os.environ, **case.env, "PYTHONPATH": pythonpath}
    out_path, err_path, peak_path = (case.folder / name for name in ("stdout", "stderr", "peak"))
    started = time.perf_counter()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        process = subprocess.Popen(
            [sys.executable, "-c", LAUNCHER, str(peak_path), sys.executable, "-m", "capstone",
             *case.argv], env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            cwd=case.folder, start_new_session=True)
        try:
            status = process.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:  # hung (before the FIFO fix): kill it and its child
            os.killpg(process.pid, 9)
            status = process.wait()
    peak = int(peak_path.read_text() or 0) * 1024 if peak_path.exists() else 0
    status = status - 256 if status >= 192 else status  # a signal: negative, as Popen says
    return Result(status, out_path.read_text(errors="replace"),
                  err_path.read_text(errors="replace"), peak, time.perf_counter() - started)


def build_base(folder: Path, pythonpath: str) -> dict:
    """A small dataset (the generated sample's formats), a model trained on it and its database."""
    from capstone.sample import write_sample

    data = write_sample(folder / "data", seed=3, n_images=60)
    env = {**os.environ, "CAPSTONE_DATA_DIR": str(data), "CAPSTONE_DATASET": "coco",
           "CAPSTONE_CACHE": str(folder / "cache"), "PYTHONPATH": pythonpath}
    model = folder / "model.npz"
    trained = subprocess.run([sys.executable, "-m", "capstone", "train", "--epochs", "3",
                              "--out", str(model)], env=env, capture_output=True, text=True)
    assert trained.returncode == 0, trained.stderr
    found = subprocess.run([sys.executable, "-m", "capstone", "search", "--json", "--model",
                            str(model), "--k", "1", "--min-score", "-1", "boat"], env=env,
                           capture_output=True, text=True)  # any image: its id, for `similar`
    assert found.returncode == 0, found.stderr
    return {"data": data, "model": model, "image_id": json.loads(found.stdout)[0]["image_id"],
            "database": folder / "cache" / "databases" / "coco-all.npz"}


def run_corpus(folder: Path, pythonpath: str, workers: int = 4) -> list:
    """Every case of the corpus with its result, run ``workers`` at a time."""
    base = build_base(folder / "base", str(ROOT))  # made by this checkout's code
    cases = corpus(folder / "cases", base)
    with concurrent.futures.ThreadPoolExecutor(workers) as pool:
        results = list(pool.map(lambda case: run_case(case, pythonpath), cases))
    return list(zip(cases, results))


def bound(case: Case) -> int:
    """The most memory a case may take: twice its file's size plus :data:`ALLOWANCE`."""
    return 2 * (case.file.stat().st_size if case.file is not None else 0) + case.allowance


def problems(case: Case, result: Result) -> list:
    """What is wrong with a case's outcome (nothing: it passed)."""
    found = []
    if "Traceback" in result.err:
        found.append("a traceback")
    if result.status != case.status:
        found.append(f"exit {result.status}, expected {case.status}")
    lines = result.lines
    if case.progress:  # epoch lines first, then the error: the last line, the only one
        lines = [line for line in lines if not line.startswith("epoch ")]
    if case.status == 2 and (len(lines) != 1 or case.named not in lines[-1]):
        found.append(f"{len(lines)} stderr lines, expected 1 naming {case.named!r}")
    if case.status == 0 and case.named and case.named not in result.err:
        found.append(f"no line names {case.named!r}")
    if result.peak > bound(case):
        found.append(f"peak {result.peak / MB:.0f} MB over {bound(case) / MB:.0f} MB")
    if case.check is not None and not case.check(result):
        found.append("its check failed")
    return found


# -- the test -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outcomes(tmp_path_factory):
    return run_corpus(tmp_path_factory.mktemp("bad-inputs"), str(ROOT))


def test_every_bad_input_ends_in_one_line_or_a_correct_result_in_bounded_memory(outcomes):
    rows = {case.row for case, _ in outcomes}
    assert rows == {"1", "2", "3", "4", "5", "6", "8", "9", "10", "11", "12", "13", "14", "16",
                    "20"}, rows  # 7 and 17 are the app's (test_server); 15, 18, 19: in-process
    failed = {f"row {case.row} {case.name}": problems(case, result) + [result.err[-300:]]
              for case, result in outcomes if problems(case, result)}
    assert not failed, json.dumps(failed, indent=1)


def test_the_corpus_can_fail():
    """A case whose command succeeds where a refusal is expected is reported, as is a traceback."""
    case = Case("x", "x", [], named="model.npz")
    assert problems(case, Result(0, "", "", 0, 0.0))
    assert problems(case, Result(2, "", "Traceback (most recent call last):\n", 0, 0.0))
    assert problems(case, Result(2, "", "error: model.npz is damaged\n", 400 * MB, 0.0))
    assert not problems(case, Result(2, "", "error: model.npz is damaged\n", 100 * MB, 0.0))


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as temporary:
        code = sys.argv[1] if len(sys.argv) > 1 else str(ROOT)
        print("| row | case | exit | stderr lines | peak MB (bound) | s | outcome |")
        print("|---|---|---|---|---|---|---|")
        workers = int(sys.argv[2]) if len(sys.argv) > 2 else 4
        for case, result in run_corpus(Path(temporary), code, workers):
            wrong = problems(case, result)
            last = (result.lines or [""])[-1][:90].replace("|", "/")
            print(f"| {case.row} | {case.name} | {result.status} | {len(result.lines)} | "
                  f"{result.peak / MB:.0f} ({bound(case) / MB:.0f}) | {result.seconds:.1f} | "
                  f"{'; '.join(wrong) or 'ok'}: {last} |")


def test_the_readme_names_only_tests_that_exist():
    """Each ``test_file::test_name`` (a ``*`` pattern) the README's robustness table names exists."""
    import fnmatch
    import re

    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Security and robustness", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(test_\w+)::([\w*]+)`", section)
    assert len(named) >= 15, named
    for module, pattern in named:
        source = (ROOT / "tests" / f"{module}.py").read_text(encoding="utf-8")
        functions = re.findall(r"^def (test_\w+)", source, flags=re.M)
        assert fnmatch.filter(functions, pattern), f"{module}::{pattern} names no test"
