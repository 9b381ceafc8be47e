"""``python -m capstone``: the command line for data, training, evaluation and search.

Every command's options are parsed here and nowhere else. Bad input is reported as one line on
stderr with exit status 2, never a traceback; a notice (the sample stands in for COCO) follows a
successful run, so that an error stays one line.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
from pathlib import Path

from capstone import files
from capstone.data import paths
from capstone.errors import CapstoneError, DataError
from capstone.search.query import DEDUP_THRESHOLD, MAX_QUERY_CHARS, format_why, parse

# Each command imports what it uses when it runs: a search from a fresh process then loads no
# training libraries (mygrad, noggin, matplotlib), which alone would take over a second.
GLOVE_DOWNLOADS = {"200d": "glove.6B.200d.txt.w2v.zip", "50d": "glove.6B.50d.txt.w2v"}
MAX_QUERIES_BYTES = 16 * 2**20  # a queries file is typed text: more is the wrong file
QUERY_SYNTAX = ("typos are corrected; -word leaves a word out; 2:word (or word:2) weighs it "
                "twice; --image ID adds an image")
SPACES = ("semantic", "features")  # capstone.course.database.SPACES
NEGATIVES = ("hard", "random")  # capstone.course.triples.NEGATIVES
EMBEDDERS = ("linear", "mlp")  # capstone.further.embedders.EMBEDDERS
LOSSES = ("margin", "contrastive", "contrastive-both")  # capstone.further.losses.LOSSES
WEIGHTINGS = ("idf", "mean", "sif")  # capstone.course.train.WEIGHTINGS
TEXT_MAPS = ("none", "linear")  # capstone.further.textmap.TEXT_MAPS
PRESET_HELP = ("settings: default (tuned on the sample), course (the course's) or class (COCO "
               "size within a class period; see the README)")


def min_score(value: str):
    """``--min-score``'s value: ``"auto"`` or a finite number."""
    if value.strip().lower() == "auto":
        return "auto"
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError("give auto or a number such as 0.3")
    return number


def preset_name(name: str) -> str:
    """``--preset``'s value, checked against :data:`capstone.course.train.PRESETS` when given."""
    from capstone.course.train import PRESETS

    if name not in PRESETS:
        raise argparse.ArgumentTypeError(f"choose one of {', '.join(sorted(PRESETS))}")
    return name


class Parser(argparse.ArgumentParser):
    """argparse's parser, whose errors are one line (the usage is in ``--help``)."""

    def error(self, message):
        self.exit(2, f"error: {self.prog}: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every sub-command."""
    parser = Parser(
        prog="python -m capstone",
        description="Semantic image search: data, training, evaluation and search.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    dataset = Parser(add_help=False)
    dataset.add_argument("--dataset", metavar="{sample,coco}",
                         help="sample or coco (default: $CAPSTONE_DATASET, else coco when its "
                         "files are on disk, else sample)")
    common = Parser(add_help=False, parents=[dataset])
    common.add_argument("--model", help="a trained model .npz (default: the dataset's)")
    common.add_argument("--json", action="store_true", help="print JSON")

    command = commands.add_parser("data", parents=[dataset],
                                  help="summarise a dataset: counts and file paths")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.set_defaults(func=data_command)

    command = commands.add_parser(
        "download", help="fetch the COCO captions, ResNet-18 features and GloVe (cogworks-data)")
    command.add_argument("--glove", choices=sorted(GLOVE_DOWNLOADS), default="200d",
                         help="GloVe size (default 200d)")
    command.set_defaults(func=download_command)

    command = commands.add_parser(
        "sample", help="generate the embedded sample dataset",
        description="Draw the sample scenes and write them in the course's COCO/ResNet formats; "
        "point CAPSTONE_DATA_DIR at the folder to load it like real data.")
    command.add_argument("--out", type=Path, required=True,
                         help="destination folder (the default dataset's own copy is made on "
                         "first use in the cache; this writes another one anywhere)")
    command.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    command.add_argument("--images", type=int, default=3000,
                         help="number of images (default 3000)")
    command.set_defaults(func=sample_command)

    command = commands.add_parser(
        "train", parents=[dataset],
        help="train the image embedder; print final metrics as one JSON line")
    command.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    command.add_argument("--negatives", choices=NEGATIVES, help="bad images: hard or random")
    command.add_argument("--seed", type=int, default=0, help="seed of weights and triples")
    command.add_argument("--preset", type=preset_name, default="default", help=PRESET_HELP)
    command.add_argument("--out", help="model file (.npz; default: the dataset's model path)")
    command.add_argument("--embedder", choices=EMBEDDERS,
                         help="image embedder: linear (x @ M + b) or mlp (one hidden ReLU layer)")
    command.add_argument("--hidden", type=int, help="the mlp's hidden width")
    command.add_argument("--loss", choices=LOSSES,
                         help="margin ranking on triples; contrastive (in-batch softmax over "
                         "images) or contrastive-both (and over captions, as CLIP)")
    command.add_argument("--temperature", type=float, help="the contrastive loss's temperature")
    command.add_argument("--margin", type=float, help="the margin loss's margin")
    command.add_argument("--batch-size", type=int, help="captions per training step")
    command.add_argument("--standardize", action=argparse.BooleanOptionalAction,
                         help="standardise the features (mean and spread of the training images)")
    command.add_argument("--text-map", choices=TEXT_MAPS,
                         help="the text side: none (se_text as taught) or linear (a map of "
                         "se_text trained with the image map; needs a contrastive loss)")
    command.add_argument("--weighting", choices=WEIGHTINGS,
                         help="caption word weights: idf (as the course teaches), mean or sif "
                         "(default: the preset's; the default preset's is mean)")
    command.set_defaults(func=train_command)

    command = commands.add_parser(
        "evaluate", parents=[dataset],
        help="triple accuracy, Recall@k and median rank of a trained model")
    command.add_argument("--model", help="model file (.npz; default: the dataset's model)")
    command.add_argument("--json", action="store_true", help="print one JSON object")
    command.add_argument("--compare", action="store_true",
                         help="also the untrained model, the closed-form ridge and CCA "
                         "references, and chance")
    command.add_argument("--rewrites", action="store_true",
                         help="search MRR on the validation captions as typed: verbatim, keywords, "
                         "truncated and with a typo (the course benchmark's rewrites), with chance")
    command.set_defaults(func=evaluate_command)

    command = commands.add_parser(
        "export", parents=[dataset],
        help="copy the trained model into the repository (weights/DATASET.npz) for the course "
        "benchmark's adapter")
    command.add_argument("--model", help="model file (.npz; default: the dataset's model)")
    command.add_argument("--out", help="destination (default: weights/DATASET.npz in the "
                         "repository)")
    command.set_defaults(func=export_command)

    dedup = Parser(add_help=False)
    dedup.add_argument("--dedup", action="store_true",
                       help="diverse results: leave out near-duplicates of better ones")
    dedup.add_argument("--dedup-cosine", type=float, default=DEDUP_THRESHOLD, metavar="COSINE",
                       help=f"what --dedup calls near: a cosine of at least COSINE (default "
                       f"{DEDUP_THRESHOLD})")
    command = commands.add_parser("search", parents=[common, dedup],
                                  help="find the images that match a text query",
                                  epilog=f"Query syntax: {QUERY_SYNTAX}.")
    command.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    command.add_argument("query", nargs="?", help="the text to search for")
    command.add_argument("--queries", metavar="FILE", help="one query per line")
    command.add_argument("--image", type=int, action="append", metavar="ID",
                         help="an image id to search like, steered by the text (repeatable)")
    command.add_argument("--like", type=int, action="append", metavar="ID",
                         help="relevance feedback: a result that is right (repeatable)")
    command.add_argument("--unlike", type=int, action="append", metavar="ID",
                         help="relevance feedback: a result that is wrong (repeatable)")
    command.add_argument("--min-score", type=min_score, metavar="{auto,FLOAT}",
                         help="leave out results scoring below FLOAT; auto: below the model's "
                         "calibrated weak-match score")
    command.set_defaults(func=search_command)

    command = commands.add_parser("similar", parents=[common, dedup],
                                  help="find the images most like one image")
    command.add_argument("image_id", type=int, metavar="IMAGE_ID")
    command.add_argument("--k", type=int, default=10, help="number of results (default 10)")
    command.add_argument("--space", choices=SPACES, default="semantic")
    command.add_argument("--text", help='steer by text: "at night" (semantic space only)')
    command.set_defaults(func=similar_command)

    command = commands.add_parser(
        "add", parents=[dataset], help="add images to the search database without rebuilding it",
        description="Embed new images' features with the model and add them to the dataset's "
        "image database: search, similar, tags and the app find them from then on.")
    command.add_argument("--features", required=True, metavar="FILE",
                         help=".npz with arrays image_ids (n,) and features (n, 512), or a "
                         "features pickle in the course's format")
    command.add_argument("--model", help="a trained model .npz (default: the dataset's)")
    command.set_defaults(func=add_command)

    command = commands.add_parser("tags", parents=[common], help="words that describe an image")
    command.add_argument("image_id", type=int, metavar="IMAGE_ID")
    command.add_argument("--n", type=int, default=10, help="number of words (default 10)")
    command.set_defaults(func=tags_command)

    command = commands.add_parser(
        "student", help="write the student edition of the notebooks (answers cleared by nbgrader)")
    command.add_argument("--out", type=Path, default=Path("build/student"),
                         help="folder for the student notebooks (default build/student)")
    command.set_defaults(func=student_command)

    command = commands.add_parser(
        "grade", help="grade a folder of completed student notebooks: a table and a CSV",
        description="Grade DIR/<student>/NN_name.ipynb: each exercise's check on fixed inputs.")
    command.add_argument("folder", type=Path, metavar="DIR", help="the students' notebooks")
    command.add_argument("--csv", type=Path,
                         help="where to write the table (default DIR/grades.csv)")
    command.set_defaults(func=grade_command)

    command = commands.add_parser(
        "bench", help="time the project against the course's straightforward code",
        description="Run benchmarks/run.py: speed ratios against baselines timed in the same run.")
    command.add_argument("--only", metavar="NAME", help="run one benchmark module, e.g. text")
    command.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    command.set_defaults(func=bench_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command; return its exit status (2 for bad input)."""
    for stream in (sys.stdout, sys.stderr):  # a caption's lone surrogate prints as \udc80
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(errors="backslashreplace")
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    sample_by_default = "dataset" in args and args.dataset is None
    try:
        with files.held_notices() as notices:  # printed last, so that an error stays one line
            if "dataset" in args:  # resolved here, so that the sample's notice can come last
                args.dataset = paths.check_dataset_name(
                    args.dataset or paths.default_dataset_name())
                sample_by_default &= args.dataset == "sample"
            status = int(args.func(args) or 0)
    except (CapstoneError, ValueError, KeyError, FileNotFoundError) as error:
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (MemoryError, RecursionError) as error:
        print(f"error: out of memory ({type(error).__name__}); a file in use is too large or "
              "damaged: check the files the command names", file=sys.stderr)
        return 2
    except OSError as error:
        where = f" {error.filename}" if error.filename else ""
        print(f"error: cannot use{where}: {error.strerror or error}; check the path and its "
              "permissions", file=sys.stderr)
        return 2
    except Exception as error:  # a bug: still one line, with what to report
        print(f"error: unexpected {type(error).__name__}: {str(error)[:300]} (a bug in capstone: "
              "please report it with the command you ran)", file=sys.stderr)
        return 1
    for line in dict.fromkeys(notices + [paths.SAMPLE_NOTICE] * sample_by_default):
        print(line, file=sys.stderr)
    return status


def finite(value):
    """``value`` with every NaN or infinite float replaced by ``None`` (JSON ``null``)."""
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value) -> str:
    """``value`` as strict JSON: a non-finite number is ``null``, never the invalid ``NaN``."""
    return json.dumps(finite(value), allow_nan=False)


# -- data ------------------------------------------------------------------------------------------
def data_command(args) -> int:
    """``data``: a dataset's counts and file paths."""
    from capstone.data.dataset import load_dataset

    summary = load_dataset(args.dataset).summary()
    if args.json:
        print(json_text(summary))
        return 0
    files = {f"{key} file": path for key, path in summary.pop("paths").items()}
    for key, value in [*summary.items(), *files.items()]:
        print(f"{key.replace('_', ' '):>33}  {value}")
    return 0


def download_command(args) -> int:
    """``download``: the course's files, then their fast caches."""
    from capstone.data.dataset import download
    from capstone.data.store import load_features
    from capstone.data.glove import load_glove_file, unzip_glove

    names = (paths.CAPTIONS_FILE, paths.FEATURES_FILE, GLOVE_DOWNLOADS[args.glove])
    files = [download(name) for name in names]
    print("converting the features and GloVe to their fast caches (once)")
    load_features(files[1])
    load_glove_file(unzip_glove(files[2]) if files[2].suffix == ".zip" else files[2])
    print(f"done: {files[0].parent} holds the coco dataset (see `python -m capstone data`)")
    return 0


def sample_command(args) -> int:
    """``sample``: write a sample dataset into a folder."""
    from capstone.sample import read_marker, write_sample

    out = write_sample(args.out, seed=args.seed, n_images=args.images)
    marker = read_marker(out)
    print(f"{out}: {marker['n_images']} images "
          f"({marker['n_images'] - marker['images_with_features']} grayscale, without features), "
          f"{marker['captions']} captions")
    return 0


# -- training and evaluation -----------------------------------------------------------------------
def train_command(args) -> int:
    """``train``: train, save, print one JSON line of metrics; all else goes to stderr."""
    from capstone.data.dataset import load_dataset
    from capstone.data.model import check_model_path
    from capstone.course.train import resolve_settings
    from capstone.pipeline.training import train
    from capstone.data.store import writer_lock

    out = check_model_path(args.out or paths.default_model_path(args.dataset), writable=True)
    changes = {name: getattr(args, name) for name in (
        "epochs", "negatives", "seed", "embedder", "hidden", "loss", "temperature", "margin",
        "batch_size", "standardize", "text_map", "weighting")}
    settings = resolve_settings(args.preset, **changes)  # bad settings: refused before any data
    # One training at a time writes `out`: the model this run reports is the one in the file.
    with contextlib.redirect_stdout(sys.stderr), writer_lock(out):
        dataset = load_dataset(args.dataset)
        progress = sys.stderr.isatty()  # bars on a terminal; else a line per epoch (a log)
        model, history = train(dataset, args.preset, out=out, live=False, plot=False,
                               progress=progress, **changes,
                               on_epoch=None if progress else epoch_printer(settings.epochs))
    if not history.kept and not history.interrupted:
        accuracy = model.info.get("metrics", {}).get("triple_accuracy")
        raise DataError(f"no epoch did better than the untrained model (validation accuracy "
                        f"{accuracy if accuracy is None else round(accuracy, 3)}), so {out} was "
                        "left as it was; try other settings (another --preset, --loss or "
                        "--temperature) or check the features")
    summary = {"dataset": model.info["dataset"], "model": str(out) if history.kept else None,
               "checksum": model.checksum, "interrupted": history.interrupted,
               "best_epoch": history.best_epoch, **model.info.get("metrics", {})}
    print(json_text(summary))
    return 130 if history.interrupted else 0


def epoch_printer(epochs: int):
    """``on_epoch`` for :func:`capstone.course.train.train`: one line per epoch on stderr."""
    def print_epoch(record: dict) -> None:
        print(f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss']:.4f}, "
              f"validation accuracy {record['val_accuracy']:.3f} ({record['seconds']:.0f} s)",
              file=sys.stderr, flush=True)
    return print_epoch


def evaluate_command(args) -> int:
    """``evaluate``: every metric of a trained model (``--compare``: beside baselines)."""
    from capstone.data.dataset import load_dataset
    from capstone.course.evaluate import evaluate
    from capstone.pipeline.compare import compare
    from capstone.ui.tables import format_table
    from capstone.data.model import load_model

    model = load_model(args.model, dataset=args.dataset)  # no model: fail before reading data
    dataset = load_dataset(args.dataset)
    if args.rewrites:
        from capstone.search.rewrites import rewrites_table

        result = rewrites_table(model, dataset)
        print(json_text(result) if args.json else format_table(result))
        return 0
    result = compare(dataset, model) if args.compare else evaluate(model, dataset)
    if args.json:
        print(json_text(result))
    else:
        print(format_table(result if args.compare else {"trained": result}))
    return 0


def export_command(args) -> int:
    """``export``: the trained model, copied into the repository for the benchmark's adapter."""
    from capstone.apps.weights import export_model

    out = export_model(args.dataset, model_path=args.model, out=args.out)
    print(f"exported to {out} ({out.stat().st_size / 1e6:.1f} MB): commit it, and the course "
          "benchmark's adapter loads it before any other model")
    return 0


# -- search ----------------------------------------------------------------------------------------
def database_for(dataset_name=None, model_path=None):
    """The saved database of a dataset's images for a model, rebuilt when missing or stale.

    Read with what search needs only (:func:`capstone.pipeline.prepared.open_database`).
    """
    from capstone.pipeline.prepared import open_database

    return open_database(dataset_name, model_path)


def say_which_model(database) -> None:
    """The last stderr line of a search: which model file answered, when trained, how well."""
    print(f"using the {database.model.describe()}", file=sys.stderr)


def print_results(results: list[dict], as_json: bool) -> None:
    """Search results as one JSON list, or one readable line each (top words, weak matches)."""
    if as_json:
        print(json_text(results))
        return
    for rank, result in enumerate(results, 1):
        caption = result["captions"][0] if result["captions"] else ""
        words = format_why(result.get("why", {}))
        print(f"{rank:3d}. {result['score']:.3f}  {result['image_id']:>8d}  {caption}"
              + (f"  [{words}]" if words else "")
              + ("  (weak match)" if result.get("weak") else ""))


def print_search(found, args, where: str = "") -> None:
    """A search's corrections, feedback and results; when nothing matches well, only saying so.

    With the model's calibration and no ``--min-score``, a query whose best image is a weak
    match prints no results (``[]`` in JSON) and one stderr line saying so; ``--min-score``
    with a number shows what it lets through, weak matches marked.
    """
    print_corrections(found.corrections, where)
    if found.update:
        print(f"{where}feedback: searching for {found.update}", file=sys.stderr)
    results = found.results
    if found.no_match and args.min_score is None:
        print(f"{where}{found.no_match_message()} (--min-score -1 shows the nearest anyway)",
              file=sys.stderr)
        results = []
    elif found.dropped and not results:
        print(f"{where}no result scores at least {args.min_score}", file=sys.stderr)
    print_results(results, args.json)


def print_corrections(corrections: dict, where: str = "") -> None:
    """One stderr line naming the corrected words, e.g. ``did you mean: baot -> boat``."""
    if corrections:
        fixed = ", ".join(f"{typed} -> {used}" for typed, used in corrections.items())
        print(f"{where}did you mean: {fixed}", file=sys.stderr)


def read_queries(path) -> list[str]:
    """The lines of a queries file, checked to be a bounded UTF-8 text (``DataError`` if not).

    A FIFO is opened without waiting for a writer (a FIFO nobody writes to is empty), and at
    most :data:`MAX_QUERIES_BYTES` are read (``/dev/zero`` never ends).
    """
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # open() on a FIFO would wait
        with open(descriptor, "rb") as file:
            os.set_blocking(descriptor, True)  # a writer that is there is waited for
            data = file.read(MAX_QUERIES_BYTES + 1)
        text = data.decode("utf-8")
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) else "not UTF-8 text"
        raise DataError(f"cannot read the queries file {path} ({reason}); give a UTF-8 "
                        "text file with one query per line") from None
    if len(data) > MAX_QUERIES_BYTES:
        raise DataError(f"the queries file {path} is over {MAX_QUERIES_BYTES // 2**20} MiB; "
                        "split it into smaller files of one query per line")
    lines = text.splitlines()
    for number, line in enumerate(lines, 1):
        if len(line) > MAX_QUERY_CHARS:
            raise DataError(f"{path} line {number} has {len(line):,} characters, over "
                            f"{MAX_QUERY_CHARS:,}: give one short query per line")
    return lines


def search_command(args) -> int:
    """``search``: one query, or ``--queries FILE`` with one per line (each answered)."""
    alone = (args.image or args.like) and args.query is None and args.queries is None
    if (args.query is None) == (args.queries is None) and not alone:
        raise ValueError('give either a query ("a dog on a beach") or --queries FILE, not both')
    options = {"image": args.image, "dedup": args.dedup and args.dedup_cosine,
               "like": args.like, "unlike": args.unlike, "min_score": args.min_score}
    if args.query:
        parse(args.query)  # a query's syntax is checked before anything is read
    if args.queries is None:
        database = database_for(args.dataset, args.model)
        found = database.search(args.query or "", args.k, **options)
        print_search(found, args)
        say_which_model(database)
        return 0
    lines = read_queries(args.queries)
    if not any(line.strip() for line in lines):
        raise DataError(f"the queries file {args.queries} holds no query (a FIFO that nobody "
                        "writes to reads as empty); give one query per line")
    database = database_for(args.dataset, args.model)
    for line_number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            found = database.search(line, args.k, **options)
        except ValueError as error:  # this line has no known word: say so, answer the others
            if args.json:
                print(json_text({"query": line, "line": line_number, "error": str(error)}))
            else:
                print(f"{args.queries} line {line_number}: error: {error}")
            continue
        if not args.json:
            print(f"{args.queries} line {line_number}: {line}")
        print_search(found, args, f"{args.queries} line {line_number}: ")
        sys.stdout.flush()
    say_which_model(database)
    return 0


def similar_command(args) -> int:
    """``similar``: the images most like one image (``--text``: steered by text)."""
    database = database_for(args.dataset, args.model)
    if args.text is None and not args.dedup:
        results = database.similar(args.image_id, args.k, args.space)
        for result in results:  # the one share of a cosine to one image is all of it
            result["why"] = {f"#{args.image_id}": result["score"]}
    elif args.space != "semantic":
        raise ValueError("--text and --dedup search the semantic space; drop --space features")
    else:
        found = database.search(args.text or "", args.k, image=args.image_id,
                                dedup=args.dedup and args.dedup_cosine)
        print_corrections(found.corrections)
        results = found.results
    print_results(results, args.json)
    say_which_model(database)
    return 0


def tags_command(args) -> int:
    """``tags``: the words nearest an image's embedding."""
    database = database_for(args.dataset, args.model)
    tags = database.tags(args.image_id, args.n)
    if args.json:
        print(json_text([{"word": word, "score": score} for word, score in tags]))
    else:
        for word, score in tags:
            print(f"{score:.3f}  {word}")
    say_which_model(database)
    return 0


def add_command(args) -> int:
    """``add``: embed and add images (refusing any already there), saved for later searches."""
    from capstone.search.database import read_image_features, save_added_images

    image_ids, features = read_image_features(args.features)
    database = database_for(args.dataset, args.model)
    database.add(image_ids, features)
    path = save_added_images(database)
    print(f"added {len(image_ids):,} images; the {args.dataset} database now holds "
          f"{len(database):,} ({len(database.added_features):,} added, kept in {path})")
    return 0


def bench_command(args) -> int:
    """``bench``: run ``benchmarks/run.py``."""
    from capstone.apps.bench import run_benchmarks

    only = ["--only", args.only] if args.only else []
    return run_benchmarks(only + (["--json", args.json] if args.json else []))


# -- teaching --------------------------------------------------------------------------------------
def student_command(args) -> int:
    """``student``: the student edition of the notebooks."""
    from capstone.teaching.student import all_exercises, write_student_edition

    written = write_student_edition(args.out)
    print(f"wrote {len(written)} notebooks to {args.out} with {len(all_exercises())} exercises "
          "to answer (each stops with NotImplementedError until answered)")
    return 0


def grade_command(args) -> int:
    """``grade``: every student's exercises, as a table on stdout and a CSV."""
    from capstone.teaching.student import format_grades, grade_folder, write_grades

    grades = grade_folder(args.folder)
    print(format_grades(grades))
    table, messages = write_grades(grades, args.csv or args.folder / "grades.csv")
    print(f"\nwrote {table} and {messages}")
    return 0
