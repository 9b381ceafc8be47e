"""Evaluation: ranks against a brute-force sort, recall, median rank, chance, the full report."""

import dataclasses
import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from test_train import small_sample  # noqa: F401 (a fixture)
from test_triples import DATASET, TEXT

from capstone.course.evaluate import (
    chance,
    evaluate,
    median_rank,
    query_captions,
    rank_of_truth,
    recall_at_k,
)
from capstone.pipeline.compare import compare
from capstone.pipeline.training import train
from capstone.ui.tables import format_table


def brute_force_rank(scores, right):
    """Sort best first, ties with wrong items put the right ones last; first right position."""
    order = sorted(range(len(scores)), key=lambda i: (-scores[i], right[i]))
    return 1 + min(position for position, i in enumerate(order) if right[i])


@settings(max_examples=100, deadline=None)
@given(data=st.data(), n_queries=st.integers(1, 6), n_items=st.integers(1, 12))
def test_rank_of_truth_matches_a_brute_force_sort(data, n_queries, n_items):
    # small integers make ties common
    scores = data.draw(arrays(np.int64, (n_queries, n_items), elements=st.integers(-3, 3)))
    right = data.draw(arrays(bool, (n_queries, n_items)))
    right[np.arange(n_queries), data.draw(arrays(np.int64, n_queries,
                                                 elements=st.integers(0, n_items - 1)))] = True
    expected = [brute_force_rank(s.tolist(), r.tolist()) for s, r in zip(scores, right)]
    assert rank_of_truth(scores, right).tolist() == expected
    single = right.argmax(axis=1)  # one right column per query, given as indices
    one_hot = np.eye(n_items, dtype=bool)[single]
    assert rank_of_truth(scores, single).tolist() == rank_of_truth(scores, one_hot).tolist()


@settings(max_examples=100, deadline=None)
@given(ranks=arrays(np.int64, st.integers(1, 50), elements=st.integers(1, 30)),
       k=st.integers(1, 30))
def test_recall_at_k_and_median_rank_by_counting(ranks, k):
    assert recall_at_k(ranks, k) == sum(rank <= k for rank in ranks.tolist()) / len(ranks)
    ordered = sorted(ranks.tolist())
    middle = len(ordered) // 2
    expected = ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
    assert median_rank(ranks) == expected


def test_rank_of_truth_needs_a_right_item():
    with pytest.raises(ValueError, match="at least one right item"):
        rank_of_truth(np.zeros((2, 3)), np.zeros((2, 3), bool))


def test_chance_matches_combinatorics():
    result = chance(DATASET, n_images=40)
    n, n_captions = 40, 200
    assert result["recall@5"] == 5 / n and result["median_rank"] == (n + 1) / 2
    for k in (1, 5, 10):
        exact = 1 - math.comb(n_captions - 5, k) / math.comb(n_captions, k)
        assert result[f"i2t_recall@{k}"] == pytest.approx(exact)
    simulated = [np.flatnonzero(np.random.default_rng(seed).permutation(n_captions) < 5)[0] + 1
                 for seed in range(4000)]
    assert abs(result["i2t_median_rank"] - np.median(simulated)) <= 2


def test_query_captions_are_the_first_five_of_each_image():
    extra = dataclasses.replace(
        DATASET,
        captions=[*DATASET.captions, "a sixth caption"],
        caption_ids=np.r_[DATASET.caption_ids, 10**6],
        caption_image_ids=np.r_[DATASET.caption_image_ids, DATASET.image_ids[0]],
    )
    captions, owners = query_captions(extra, DATASET.image_ids[:3])
    assert captions == DATASET.captions[:15] and owners.tolist() == np.repeat(
        DATASET.image_ids[:3], 5).tolist()


@pytest.fixture(scope="module")
def trained():
    model, _ = train(DATASET, epochs=3, text=TEXT, out=False, plot=False, progress=False,
                     n_candidates=10)
    return model


def test_trained_beats_untrained_and_chance(trained):
    table = compare(DATASET, trained, n_images=50)
    assert set(table) == {"trained", "untrained", "ridge", "chance"}  # ridge: test_further.py
    good, base, luck = table["trained"], table["untrained"], table["chance"]
    for name in ("triple_accuracy", "recall@1", "recall@5", "recall@10", "i2t_recall@5",
                 "concept_precision@10"):
        assert good[name] > base[name] + 0.1 and good[name] > luck[name] + 0.1, name
    assert good["median_rank"] < base["median_rank"] / 2
    assert good["n_images"] == 50 and good["5k_recall@1"] is None  # only 60 validation images
    text = format_table(table)
    assert "recall@10" in text and "untrained" in text
    assert "5k_recall@1" not in text  # a protocol no column could run is left out


def test_evaluate_reports_concepts_per_word(trained):
    metrics = evaluate(trained, DATASET, n_images=60)
    per_concept = metrics["concept_precision@10_per_concept"]
    assert set(per_concept) <= {"boat", "house", "tree", "car", "ball", "fish", "red", "blue",
                                "green", "yellow", "grass", "sky", "water"}
    assert metrics["concept_precision@10"] == pytest.approx(np.mean(list(per_concept.values())))
    assert metrics["triple_accuracy"] > metrics["triple_loss"]


class Oracle:
    """A model that embeds each caption exactly where it embeds the caption's image."""

    def __init__(self, dataset):
        self.codes = np.random.default_rng(0).normal(size=(dataset.n_images, 32))
        self.codes /= np.linalg.norm(self.codes, axis=1, keepdims=True)
        self.caption_rows = dataset.rows(dataset.caption_image_ids)

    def embed_text(self, texts):
        return self.codes[[self.caption_rows[int(text.split("-")[1])] for text in texts]]

    def embed_images(self, features):
        return features


def test_a_perfect_model_scores_perfectly():
    numbered = dataclasses.replace(
        DATASET, captions=[f"caption-{i}" for i in range(len(DATASET.captions))]
    )
    oracle = Oracle(numbered)
    numbered = dataclasses.replace(numbered, features=oracle.codes.astype(np.float32))
    metrics = evaluate(oracle, numbered, n_images=60, concepts=False)
    for name in ("triple_accuracy", "recall@1", "i2t_recall@1"):
        assert metrics[name] == 1.0, name
    assert metrics["median_rank"] == metrics["i2t_median_rank"] == 1.0


# -- command line ----------------------------------------------------------------------------------
def test_cli_evaluate_json_and_table(small_sample, tmp_path, monkeypatch, capsys):
    from capstone.apps.cli import main

    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(small_sample))
    monkeypatch.setenv("CAPSTONE_MODEL", str(tmp_path / "model.npz"))
    assert main(["train", "--dataset", "coco", "--epochs", "1"]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--dataset", "coco", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert {"triple_accuracy", "recall@1", "recall@5", "recall@10", "median_rank",
            "i2t_recall@1", "i2t_recall@5", "i2t_recall@10", "i2t_median_rank"} <= set(metrics)
    assert metrics["n_images"] == 40  # every validation image of 198 with features
    assert main(["evaluate", "--dataset", "coco", "--compare"]) == 0
    table = capsys.readouterr().out
    assert table.splitlines()[0].split() == ["trained", "untrained", "ridge", "chance"]
    assert any(line.startswith("median_rank") for line in table.splitlines())


def test_cli_evaluate_names_the_command_for_a_missing_model(tmp_path, capsys):
    from capstone.apps.cli import main

    assert main(["evaluate", "--dataset", "sample", "--model", str(tmp_path / "none.npz")]) == 2
    assert "python -m capstone train --dataset sample" in capsys.readouterr().err
    assert main(["evaluate", "--dataset", "imagenet"]) == 2
    assert "unknown dataset name 'imagenet'" in capsys.readouterr().err


def test_the_larger_protocol_runs_when_the_split_is_big_enough(trained):
    metrics = evaluate(trained, DATASET, n_images=10, concepts=False)  # 5 x 10 <= 60 images
    assert metrics["n_images"] == 10
    for prefix in ("5k_", "5k_i2t_"):
        assert 0 <= metrics[f"{prefix}recall@1"] <= metrics[f"{prefix}recall@10"] <= 1
        assert metrics[f"{prefix}median_rank"] >= 1
    # among five times the images, the right one is harder to rank first
    assert metrics["5k_recall@1"] <= metrics["recall@1"]
