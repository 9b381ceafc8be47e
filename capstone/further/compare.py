"""Training variants side by side with the closed-form ridge reference.

Notebook 6 and ``benchmarks/compare_defaults.py`` call :func:`compare_variants`: each variant
is a set of :class:`capstone.course.train.Settings` changes (and optionally a text ``weighting``),
trained with each seed and evaluated on the validation images; the ridge map of each text
weighting is a row too. Every number is measured when the function runs.
"""

from __future__ import annotations

import time

import numpy as np

from capstone.course.evaluate import evaluate
from capstone.data.glove import load_glove
from capstone.sample import KINDS, UNUSED_SYNONYMS
from capstone.pipeline.training import train
from capstone.further.ridge import fit_ridge
from capstone.further.sif import fit_text_weighted

KEYS = ("recall@1", "recall@10", "median_rank", "i2t_recall@10", "concept_precision@10")
MARGIN = dict(loss="margin", batch_size=32, lr=3e-3, optimizer="adam", margin=0.1,
              n_candidates=5)
CONTRASTIVE = dict(loss="contrastive", batch_size=128, lr=3e-3, optimizer="adam",
                   temperature=0.05, n_candidates=5)
VARIANTS = {
    "course: linear, margin, SGD": dict(MARGIN, embedder="linear", standardize=False, lr=1e-3,
                                        optimizer="sgd", margin=0.25, n_candidates=25),
    "linear, margin": dict(MARGIN, embedder="linear", standardize=False),
    "linear, margin, standardised": dict(MARGIN, embedder="linear", standardize=True),
    "linear, contrastive": dict(CONTRASTIVE, embedder="linear", standardize=False),
    "linear, contrastive, standardised": dict(CONTRASTIVE, embedder="linear", standardize=True),
    "linear, contrastive-both, standardised": dict(CONTRASTIVE, loss="contrastive-both",
                                                   embedder="linear", standardize=True),
    "mlp, contrastive, standardised": dict(CONTRASTIVE, embedder="mlp", standardize=True),
    "linear, contrastive, standardised, sif": dict(CONTRASTIVE, embedder="linear",
                                                   standardize=True, weighting="sif"),
}


def compare_variants(dataset, variants=None, *, seeds=(0,), glove=None, ridge=True,
                     report=None, extra=None, **changes) -> dict:
    """Train and evaluate each variant with each seed; add the ridge reference.

    Parameters
    ----------
    dataset : capstone.data.dataset.Dataset
    variants : dict, optional
        Name -> :class:`~capstone.course.train.Settings` changes, plus an optional ``weighting``
        (``"idf"``, ``"mean"`` or ``"sif"``: how captions are embedded); default :data:`VARIANTS`.
    seeds : sequence of int
        Training seeds (the train/validation split stays the dataset's).
    ridge : bool
        Add a ``ridge`` row (``ridge, sif`` etc. for other weightings), which has no seed.
    report : callable, optional
        Called with ``(name, row)`` as each row is done (e.g. ``print``).
    extra : callable, optional
        ``extra(model, dataset) -> {name: float}``: more metrics of each model (ridge too).
    **changes
        Applied to every variant, e.g. ``epochs=10``.

    Returns
    -------
    dict
        Name -> ``{metric: mean over seeds}`` for :data:`KEYS` (those the dataset has) and
        ``extra``'s, with ``seconds`` (mean training time) and ``per_seed`` (``{metric:
        [values]}``).
    """
    variants = VARIANTS if variants is None else variants
    glove = load_glove(dataset.glove_name) if glove is None else glove

    def measure(model):
        return {**evaluate(model, dataset), **(extra(model, dataset) if extra else {})}

    texts, rows = {}, {}
    for name, variant in variants.items():
        variant = dict(variant)
        weighting = variant.pop("weighting", "idf")
        if weighting not in texts:
            texts[weighting] = fit_text_weighted(dataset, glove, weighting)
            if ridge:
                key = "ridge" if weighting == "idf" else f"ridge, {weighting}"
                rows[key] = summarise([measure(fit_ridge(dataset, texts[weighting]))])
                if report:
                    report(key, rows[key])
        runs = []
        for seed in seeds:
            started = time.perf_counter()
            model, _ = train(dataset, text=texts[weighting], out=False, plot=False,
                             progress=False, **{**variant, **changes, "seed": seed})
            runs.append({**measure(model), "seconds": time.perf_counter() - started})
        rows[name] = summarise(runs)
        if report:
            report(name, rows[name])
    return rows


def summarise(runs: list) -> dict:
    """Means over runs of :data:`KEYS`, ``seconds`` and any other float (an ``extra``
    metric), with the values in ``per_seed``."""
    others = [key for key, value in runs[0].items() if isinstance(value, float)
              and key not in KEYS]
    keys = [key for key in (*KEYS, *others, "seconds") if runs[0].get(key) is not None]
    per_seed = {key: [float(run[key]) for run in runs] for key in keys}
    return {**{key: float(np.mean(values)) for key, values in per_seed.items()},
            "per_seed": per_seed}


def table(rows: dict, keys=KEYS) -> dict:
    """``rows`` as columns for :func:`capstone.ui.tables.format_table` (metrics by row name)."""
    return {name: {key: row.get(key) for key in keys} for name, row in rows.items()}


def markdown(rows: dict, keys=KEYS[:4]) -> str:
    """A Markdown table: one line per row, ``mean (min-max)`` where there are several seeds."""
    def cell(values):
        text = f"{np.mean(values):.3f}".rstrip("0").rstrip(".") if values else "-"
        if len(values) > 1:
            text += f" ({min(values):.3g}–{max(values):.3g})"
        return text

    lines = ["| model | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, row in rows.items():
        lines.append(f"| {name} | " + " | ".join(cell(row["per_seed"].get(key, []))
                                                 for key in keys) + " |")
    return "\n".join(lines)


def synonym_precision(model, dataset, k: int = 10) -> dict:
    """Precision@k over the whole dataset of each word that no caption uses
    (:data:`capstone.sample.UNUSED_SYNONYMS`): ``{"P@10 ship": ...}``, a hit being an image
    whose scene has the word's concept (a kind of object, or the background)."""
    images = model.embed_images(dataset.features)
    scenes = [dataset.scenes[int(image_id)] for image_id in dataset.image_ids]
    result = {}
    for concept, word in UNUSED_SYNONYMS.items():
        top = np.argsort(-(images @ model.embed_query(word)), kind="stable")[:k]
        hits = [any(obj["kind"] == concept for obj in scenes[i]["objects"]) if concept in KINDS
                else scenes[i]["background"] == concept for i in top]
        result[f"P@{k} {word}"] = float(np.mean(hits))
    return result
