"""Models side by side: trained against untrained, ridge and chance; training variants.

:func:`compare` is ``evaluate --compare`` and notebook 4's table. Notebook 6 and
``benchmarks/compare_defaults.py`` call :func:`compare_variants`: each variant is a set of
:class:`capstone.course.train.Settings` changes (``weighting``: how captions are embedded),
trained with each seed and evaluated on the validation images; the ridge map of each text
weighting is a row too. Every number is measured when the function runs.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np

from capstone.course.evaluate import chance, evaluate
from capstone.course.triples import validation_triples
from capstone.data.glove import load_glove
from capstone.data.model import SearchModel
from capstone.further.embedders import untrained_copy
from capstone.further.ridge import ALPHA, ridge_map
from capstone.further.cca import cca_map
from capstone.further.sif import fit_text_weighted
from capstone.pipeline.training import train
from capstone.sample import KINDS, UNUSED_SYNONYMS


# -- the trained model against baselines -----------------------------------------------------
def untrained_like(model):
    """The model before training: the same text embedder, a fresh image layer (same seed)."""
    seed = model.info.get("settings", {}).get("seed", 0)
    image = untrained_copy(model.image, seed)
    return SearchModel(image, model.plain_text, {**model.info, "metrics": {}})


def compare(dataset, model, *, n_images: int = 1000, seed: int = 0,
            caption_embeddings=None) -> dict:
    """:func:`evaluate` of the trained model, the untrained one (same seed), the closed-form
    ridge map (:mod:`capstone.further.ridge`), the closed-form two-tower CCA map
    (:mod:`capstone.further.cca`) and chance: ``{"trained": {...}, "untrained": {...}, "ridge":
    {...}, "cca": {...}, "chance": {...}}`` (no per-concept or per-query keys).

    Every model shares ``model``'s ``se_text`` (``model.plain_text``), so its caption
    embeddings are made once (or given: ``caption_embeddings``, its rows of ``dataset.captions``)
    and every model is scored on the same validation triples.
    """
    plain = (model.plain_text.embed(dataset.captions) if caption_embeddings is None
             else caption_embeddings)
    validation = validation_triples(dataset, plain)
    # evaluate reads the caption embeddings at the validation triples' rows only: keep those
    # (a text map's copy of every caption would be 80 MB at COCO's size)
    used = np.unique(np.concatenate([triples.caption_rows for triples in validation.values()]))
    validation = {kind: dataclasses.replace(triples, caption_rows=np.searchsorted(
        used, triples.caption_rows)) for kind, triples in validation.items()}
    captions = plain[used]
    models = {"trained": model, "untrained": untrained_like(model),
              "ridge": ridge_like(model, dataset), "cca": cca_like(model, dataset, plain)}
    table = {}
    for name, each in models.items():
        mapped = getattr(each.image, "embed_text_rows", None)  # a text map: its captions
        table[name] = evaluate(each, dataset, n_images=n_images, seed=seed, validation=validation,
                               caption_embeddings=captions if mapped is None else mapped(captions))
    table["chance"] = chance(dataset, n_images=n_images, seed=seed)
    for column in table.values():
        column.pop("concept_precision@10_per_concept", None)
        column.pop("attribute_precision@10_per_query", None)
    return table


def fit_ridge(dataset, text, *, alpha: float = ALPHA, info: dict | None = None) -> SearchModel:
    """The ridge map of ``dataset``'s training images (:func:`capstone.further.ridge.ridge_map`)
    as a search model with ``text``; ``info``'s ``settings`` gain ``reference: "ridge"`` and
    ``alpha``."""
    info = dict(info or {"dataset": dataset.name})
    info["settings"] = {**info.get("settings", {}), "reference": "ridge", "alpha": alpha}
    info["metrics"] = {}
    return SearchModel(ridge_map(dataset, text, alpha=alpha), text, info)


def ridge_like(model, dataset, *, alpha: float = ALPHA) -> SearchModel:
    """The ridge reference for a trained ``model``: its text embedder, record and margin."""
    return fit_ridge(dataset, model.plain_text, alpha=alpha, info=model.info)


def cca_like(model, dataset, caption_embeddings=None) -> SearchModel:
    """The CCA reference for a trained ``model``: its ``se_text`` (without any text map), whose
    embeddings of ``dataset.captions`` may be given."""
    info = {**model.info, "metrics": {}}
    info["settings"] = {**info.get("settings", {}), "reference": "cca"}
    return SearchModel(cca_map(dataset, model.plain_text, caption_embeddings), model.plain_text,
                       info)


# -- training variants -------------------------------------------------------------------------
KEYS = ("recall@1", "recall@10", "median_rank", "i2t_recall@10", "concept_precision@10",
        "attribute_precision@10")
MARGIN = dict(loss="margin", batch_size=32, lr=3e-3, optimizer="adam", margin=0.1,
              n_candidates=5, text_map="none")
CONTRASTIVE = dict(loss="contrastive", batch_size=128, lr=3e-3, optimizer="adam",
                   temperature=0.05, n_candidates=5, text_map="none")
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
    "linear, contrastive, standardised, text map": dict(
        CONTRASTIVE, embedder="linear", standardize=True, text_map="linear",
        text_map_init="identity"),
    "linear, contrastive, standardised, text map from CCA": dict(
        CONTRASTIVE, embedder="linear", standardize=True, text_map="linear",
        text_map_init="cca"),
    "linear, contrastive, standardised, text map from CCA, mean weighting": dict(
        CONTRASTIVE, embedder="linear", standardize=True, text_map="linear",
        text_map_init="cca", weighting="mean"),
    "linear, contrastive, standardised, text map from CCA, temperature 0.2": dict(
        CONTRASTIVE, embedder="linear", standardize=True, text_map="linear",
        text_map_init="cca", temperature=0.2),
    # the default preset (capstone.course.train.PRESETS["default"])
    "linear, contrastive, standardised, text map from CCA, mean weighting, temperature 0.2": dict(
        CONTRASTIVE, embedder="linear", standardize=True, text_map="linear",
        text_map_init="cca", weighting="mean", temperature=0.2),
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
        Add a ``ridge`` row (``ridge, sif`` etc. for other weightings) and, for the IDF and
        mean weightings, a ``cca`` row (``cca, mean``; :mod:`capstone.further.cca`); neither
        has a seed.
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
        if weighting == "sif":  # a text map maps idf or mean sums, not SIF's
            variant.setdefault("text_map", "none")
        if weighting not in texts:
            texts[weighting] = fit_text_weighted(dataset, glove, weighting)
            if ridge:
                key = "ridge" if weighting == "idf" else f"ridge, {weighting}"
                rows[key] = summarise([measure(fit_ridge(dataset, texts[weighting]))])
                if report:
                    report(key, rows[key])
                if weighting != "sif":  # CCA's text side is linear: no SIF
                    key = "cca" if weighting == "idf" else f"cca, {weighting}"
                    closed = SearchModel(cca_map(dataset, texts[weighting]), texts[weighting],
                                         {"dataset": dataset.name})
                    rows[key] = summarise([measure(closed)])
                    if report:
                        report(key, rows[key])
        runs = []
        for seed in seeds:
            started = time.perf_counter()
            model, _ = train(dataset, text=texts[weighting], out=False, plot=False,
                             progress=False, calibration=False,  # measured, not kept
                             **{**variant, **changes, "seed": seed})
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
