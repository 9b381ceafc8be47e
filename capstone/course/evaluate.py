"""How well a model searches: triple accuracy, Recall@k and median rank, concept precision.

Retrieval follows the COCO 1K protocol: 1,000 held-out (validation) images, their first five
captions each as queries (5,000), every query searched among those 1,000 images (text to image),
and every image searched among those 5,000 captions (image to text: the rank of its first
correct caption). The 5K protocol does the same with 5,000 images when the validation split has
that many. Ties count against the model: a rank is one plus the number of wrong items scoring at
least as high as the best right one.
"""

from __future__ import annotations

import numpy as np

from capstone.course.triples import triple_metrics, validation_triples

CAPTIONS_PER_IMAGE = 5
KS = (1, 5, 10)


# -- ranks ---------------------------------------------------------------------------------------
def rank_of_truth(similarities, truth) -> np.ndarray:
    """1-based rank of each query's best right item: ``1 + #(wrong items scoring >= it)``.

    ``similarities`` is ``(n_queries, n_items)``, higher better; ``truth`` the right item's
    column per query, or a boolean mask of every right item.
    """
    similarities = np.asarray(similarities)
    truth = np.asarray(truth)
    if truth.dtype != bool:
        mask = np.zeros(similarities.shape, dtype=bool)
        mask[np.arange(len(similarities)), truth] = True
        truth = mask
    if truth.shape != similarities.shape or not truth.any(axis=1).all():
        raise ValueError("every query needs at least one right item among the similarities")
    best_right = np.where(truth, similarities, -np.inf).max(axis=1, keepdims=True)
    return 1 + np.sum((similarities >= best_right) & ~truth, axis=1)


def recall_at_k(ranks, k: int) -> float:
    """Share of queries whose right item ranks in the top ``k``."""
    return float(np.mean(np.asarray(ranks) <= k))


def median_rank(ranks) -> float:
    """Median of the ranks (1 is perfect)."""
    return float(np.median(ranks))


def rank_summary(ranks, prefix: str = "") -> dict:
    """``recall@1/5/10`` and ``median_rank`` of ranks, keys prefixed by ``prefix``."""
    summary = {f"{prefix}recall@{k}": recall_at_k(ranks, k) for k in KS}
    summary[f"{prefix}median_rank"] = median_rank(ranks)
    return summary


# -- retrieval -----------------------------------------------------------------------------------
def held_out_images(dataset, n_images: int, seed: int = 0) -> np.ndarray:
    """``n_images`` validation image ids (all of them when fewer), sorted, drawn with ``seed``."""
    image_ids = dataset.val_image_ids
    if len(image_ids) > n_images:
        image_ids = np.random.default_rng(seed).choice(image_ids, n_images, replace=False)
    return np.sort(image_ids)


def query_captions(dataset, image_ids) -> tuple[list, np.ndarray]:
    """The first five captions of each image (in dataset order), and each caption's image."""
    rows = np.flatnonzero(dataset.caption_mask(image_ids))
    owners = dataset.caption_image_ids[rows]
    order = np.argsort(owners, kind="stable")
    rows, owners = rows[order], owners[order]
    first = np.searchsorted(owners, owners)  # each image's first caption position
    keep = np.arange(len(rows)) - first < CAPTIONS_PER_IMAGE
    return [dataset.captions[row] for row in rows[keep]], owners[keep]


def retrieval_metrics(model, dataset, image_ids) -> dict:
    """Text-to-image and image-to-text ranks of ``image_ids`` and their first five captions."""
    captions, caption_owner = query_captions(dataset, image_ids)
    text = model.embed_text(captions)
    images = model.embed_images(dataset.features_of(image_ids))
    image_ids = np.asarray(image_ids)
    return {
        **rank_summary(ranks_by_owner(text, caption_owner, images, image_ids)),
        **rank_summary(ranks_by_owner(images, image_ids, text, caption_owner), "i2t_"),
    }


def ranks_by_owner(queries, query_owner, items, item_owner, block: int = 256) -> np.ndarray:
    """Rank of each query's best right item by cosine (right: the same owner image).

    Scores ``block`` queries at a time, which bounds memory at the 5K protocol's 25,000 captions.
    """
    ranks = [
        rank_of_truth(queries[start : start + block] @ items.T,
                      query_owner[start : start + block, None] == item_owner[None, :])
        for start in range(0, len(queries), block)
    ]
    return np.concatenate(ranks)


# -- concepts (the sample's scene records) -------------------------------------------------------
def scene_concepts(scene: dict) -> set:
    """The words a scene record makes true: its background and its objects' kinds and colours."""
    return {scene["background"]} | {word for item in scene["objects"]
                                     for word in (item["kind"], item["color"])}


def concept_precision(model, dataset, image_ids, k: int = 10) -> dict:
    """Precision@k of one-word concept queries among ``image_ids`` (datasets with scenes).

    Every concept of the scene records (kind, colour, background) is a query; a hit is a top-k
    image whose scene has it. Returns ``mean`` and ``per_concept``.
    """
    truth = [scene_concepts(dataset.scenes[int(image_id)]) for image_id in image_ids]
    images = model.embed_images(dataset.features_of(image_ids))
    per_concept = {}
    for concept in sorted(set().union(*truth)):
        try:
            query = model.embed_query(concept)
        except ValueError:
            continue
        top = np.argsort(-(images @ query), kind="stable")[:k]
        per_concept[concept] = float(np.mean([concept in truth[i] for i in top]))
    return {"mean": float(np.mean(list(per_concept.values()))) if per_concept else None,
            "per_concept": per_concept}


# where a combination query puts its background, in the captions' most common wording
PLACES = {"grass": "on the grass", "sky": "in the sky", "water": "on the water",
          "sand": "on the sand", "snow": "in the snow", "night": "at night"}


def attribute_queries(scene: dict) -> dict:
    """``{query: (color, kind, background or None)}`` of the combinations a scene holds: each
    object's "a red boat", and with the background "a red boat on the water"."""
    queries = {}
    for item in scene["objects"]:
        pair = f"a {item['color']} {item['kind']}"
        place = PLACES.get(scene["background"], f"with {scene['background']}")
        queries[pair] = (item["color"], item["kind"], None)
        queries[f"{pair} {place}"] = (item["color"], item["kind"], scene["background"])
    return queries


def attribute_precision(model, dataset, image_ids, k: int = 10) -> dict:
    """Precision@k of colour + kind (+ background) queries among ``image_ids``.

    Every combination that some scene of ``image_ids`` holds is a query ("a red boat", "a red
    boat on the water"); a hit is a top-k image with an object of that colour and kind (and
    that background). A combination fewer than ``k`` images hold is scored out of their number,
    so that 1 is always reachable. Returns ``mean``, ``mean_pairs``, ``mean_triples`` and
    ``per_query``.
    """
    held = [attribute_queries(dataset.scenes[int(image_id)]) for image_id in image_ids]
    combinations = {query: named for queries in held for query, named in queries.items()}
    images = model.embed_images(dataset.features_of(image_ids))
    per_query = {}
    for query in sorted(combinations):
        relevant = np.array([query in queries for queries in held])
        try:
            vector = model.embed_query(query)
        except ValueError:  # no word of it in the model's vocabulary (as concept_precision)
            continue
        top = np.argsort(-(images @ vector), kind="stable")[:k]
        per_query[query] = float(relevant[top].sum() / min(k, relevant.sum()))
    pairs = [per_query[q] for q, named in combinations.items() if q in per_query and named[2] is None]
    triples = [per_query[q] for q, named in combinations.items()
               if q in per_query and named[2] is not None]
    def mean(values):  # None when no query of the kind has a known word
        return float(np.mean(values)) if len(values) else None

    return {"mean": mean(list(per_query.values())), "mean_pairs": mean(pairs),
            "mean_triples": mean(triples), "per_query": per_query}


def chance_concept_precision(dataset, image_ids) -> dict:
    """What random top-k lists score on average: each concept's share of ``image_ids``."""
    truth = [scene_concepts(dataset.scenes[int(image_id)]) for image_id in image_ids]
    per_concept = {c: float(np.mean([c in t for t in truth])) for c in sorted(set().union(*truth))}
    return {"mean": float(np.mean(list(per_concept.values()))) if per_concept else None,
            "per_concept": per_concept}


# -- all together ----------------------------------------------------------------------------------
def evaluate(model, dataset, *, n_images: int = 1000, seed: int = 0, concepts: bool = True,
             margin: float | None = None, caption_embeddings=None, validation=None) -> dict:
    """Every metric of a model on a dataset's held-out (validation) images.

    Returns ``triple_accuracy`` (fixed hard validation triples), ``triple_accuracy_random``,
    ``triple_loss`` (with ``margin``, by default the model's), text-to-image ``recall@1/5/10``
    and ``median_rank`` and image-to-text ``i2t_...`` on ``n_images`` images (COCO 1K), the
    same under ``5k_`` when the split has ``5 * n_images`` images (else ``None``), and with
    scene records (the sample) ``concept_precision@10`` and its ``_per_concept`` breakdown.
    ``caption_embeddings`` (the model's of ``dataset.captions``) and ``validation``
    (:func:`~capstone.course.triples.validation_triples`) are made here unless given (training
    has them already).
    """
    if margin is None:
        margin = getattr(model, "info", {}).get("settings", {}).get("margin", 0.25)
    if caption_embeddings is None:
        caption_embeddings = model.embed_text(dataset.captions)
    if validation is None:
        validation = validation_triples(dataset, caption_embeddings)
    image_embeddings = model.embed_images(dataset.features)
    hard, random = (triple_metrics(image_embeddings, caption_embeddings, validation[kind], margin)
                    for kind in ("hard", "random"))
    image_ids = held_out_images(dataset, n_images, seed)
    metrics = {
        "triple_accuracy": hard["accuracy"], "triple_accuracy_random": random["accuracy"],
        "triple_loss": hard["loss"], "n_images": int(len(image_ids)),
        **retrieval_metrics(model, dataset, image_ids),
    }
    big = 5 * n_images
    if len(dataset.val_image_ids) >= big:
        five_k = retrieval_metrics(model, dataset, held_out_images(dataset, big, seed))
    else:
        five_k = dict.fromkeys(rank_summary([1]).keys() | rank_summary([1], "i2t_").keys())
    metrics.update({f"5k_{name}": value for name, value in sorted(five_k.items())})
    if concepts and dataset.scenes:
        precision = concept_precision(model, dataset, image_ids)
        metrics["concept_precision@10"] = precision["mean"]
        metrics["concept_precision@10_per_concept"] = precision["per_concept"]
        attributes = attribute_precision(model, dataset, image_ids)
        metrics["attribute_precision@10"] = attributes["mean"]
        metrics["attribute_precision@10_pairs"] = attributes["mean_pairs"]
        metrics["attribute_precision@10_triples"] = attributes["mean_triples"]
        metrics["attribute_precision@10_per_query"] = attributes["per_query"]
    return metrics


def chance(dataset, *, n_images: int = 1000, seed: int = 0, concepts: bool = True) -> dict:
    """What random rankings score on the same protocol (same keys as :func:`evaluate`).

    Text to image: ``R@k = k / n``, median rank ``(n + 1) / 2``. Image to text (five right
    captions among ``5n``): ``R@k = 1 - C(5n - 5, k) / C(5n, k)``, median of the first right
    caption's rank from the same law. Triple accuracy is 0.5.
    """
    image_ids = held_out_images(dataset, n_images, seed)
    n = len(image_ids)
    metrics = {"triple_accuracy": 0.5, "triple_accuracy_random": 0.5, "n_images": n}
    metrics.update({f"recall@{k}": k / n for k in KS})
    metrics["median_rank"] = (n + 1) / 2
    n_captions = CAPTIONS_PER_IMAGE * n
    wrong_left = np.arange(n_captions - CAPTIONS_PER_IMAGE, 0, -1)  # P(rank > r) = prod of these
    first_right_cdf = 1 - np.cumprod(np.r_[1.0, wrong_left / (wrong_left + CAPTIONS_PER_IMAGE)])
    metrics.update({f"i2t_recall@{k}": float(first_right_cdf[k]) for k in KS})
    metrics["i2t_median_rank"] = float(np.searchsorted(first_right_cdf, 0.5))
    if concepts and dataset.scenes:
        metrics["concept_precision@10"] = chance_concept_precision(dataset, image_ids)["mean"]
        held = [attribute_queries(dataset.scenes[int(image_id)]) for image_id in image_ids]
        counts = [sum(query in queries for queries in held)  # images that hold each query
                  for query in set().union(*held)]
        metrics["attribute_precision@10"] = float(np.mean(  # a random top 10 holds 10 n / N
            [10 * count / n / min(10, count) for count in counts]))
    return metrics
