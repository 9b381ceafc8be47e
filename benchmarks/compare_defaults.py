"""Which training settings should be the default? Every variant against the ridge reference.

``python benchmarks/compare_defaults.py [--seeds 0 1 2] [--only NAME ...] [--epochs N]
[--images N] [--sif] [--synonyms] [--json PATH]`` trains each variant of
:data:`capstone.pipeline.compare.VARIANTS` on the sample (30 epochs by default) once per seed,
evaluates it on the validation images, and prints one line per variant as it finishes, then a
Markdown table (mean and range over the seeds). The ``ridge`` row is the closed-form reference
(:mod:`capstone.further.ridge`), which needs no seed.

``--images 1010`` uses a smaller sample instead (generated once in the cache): 800 training and
200 validation images, the size of the held-out real-data check. ``--sif`` adds the variants
again with SIF text weighting (and a ``ridge, sif`` row). ``--synonyms`` adds the precision@10
of each word no caption uses (:data:`capstone.sample.UNUSED_SYNONYMS`) over the whole sample.

This is a quality comparison, not a speed benchmark, so ``benchmarks/run.py`` does not run it
(each training run takes 10-90 s on a 2-core machine).
"""

from __future__ import annotations

import argparse
import json
import sys

from capstone.data.dataset import load_dataset, read_dataset
from capstone.data.paths import cache_dir
from capstone.sample import SAMPLE_VERSION, read_marker, write_sample
from capstone.pipeline.compare import KEYS, VARIANTS, compare_variants, markdown, synonym_precision


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="sample", help="sample (default) or coco")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--only", nargs="+", choices=sorted(VARIANTS), metavar="NAME",
                        help=f"variants to run (default all): {', '.join(VARIANTS)}")
    parser.add_argument("--epochs", type=int, help="epochs (default: 30, the presets')")
    parser.add_argument("--images", type=int, help="a sample of this many images instead")
    parser.add_argument("--sif", action="store_true", help="also every variant with SIF text")
    parser.add_argument("--synonyms", action="store_true",
                        help="also P@10 of each word no caption uses, over the whole sample")
    parser.add_argument("--json", metavar="PATH", help="also write the rows as JSON")
    args = parser.parse_args(argv)
    variants = {name: VARIANTS[name] for name in (args.only or VARIANTS)}
    if args.sif:
        variants |= {f"{name}, sif": {**spec, "weighting": "sif"}
                     for name, spec in variants.items()}
    changes = {"epochs": args.epochs} if args.epochs else {}

    def report(name, row):
        values = "  ".join(f"{key} {row[key]:.3f}" for key in (*KEYS, "seconds") if key in row)
        print(f"{name:40s} {values}", flush=True)

    extra = synonym_precision if args.synonyms else None
    rows = compare_variants(dataset_of(args), variants, seeds=args.seeds, report=report,
                            extra=extra, **changes)
    size = f" of {args.images} images" if args.images else ""
    keys = ("recall@1", "recall@10", "median_rank", "i2t_recall@10", "concept_precision@10")
    print(f"\nseeds {args.seeds}, dataset {args.dataset}{size}\n" + markdown(rows, keys))
    if args.synonyms:
        words = [key for key in next(iter(rows.values())) if key.startswith("P@10 ")]
        print("\n" + markdown(rows, words))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump(rows, file, indent=1)
    return 0


def dataset_of(args):
    """The dataset to compare on: ``--dataset``, or a sample of ``--images`` images."""
    if not args.images:
        return load_dataset(args.dataset)
    folder = cache_dir() / "compare-defaults" / f"sample-{args.images}"
    if read_marker(folder).get("version") != SAMPLE_VERSION:
        write_sample(folder, n_images=args.images)
    return read_dataset(folder, "sample")


if __name__ == "__main__":
    sys.exit(main())
