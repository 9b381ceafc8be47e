"""Relevance feedback (Rocchio) and knowing when nothing matches: Python, CLI and search box."""

import itertools
import json

import numpy as np
import pytest
from test_database import tiny_dataset, tiny_model

import capstone.apps.cli as cli
from capstone.search.database import SearchDatabase
from capstone.data.dataset import load_dataset
from capstone.data.model import SearchModel, load_model
from capstone.sample.scenes import COLORS, KINDS
from capstone.search.query import ROCCHIO, resolve_min_score, weak_score_of
from capstone.ui.widgets import search_box
from test_database import full_sample_model_path


@pytest.fixture(scope="module")
def sample_db():
    return SearchDatabase.load_or_build(load_model(full_sample_model_path()), load_dataset("sample"))


def holds(db, image_id, color, kind):
    """Whether one object of the image's scene record is of that colour and kind."""
    return any(item["color"] == color and item["kind"] == kind
               for item in db.dataset.scenes[image_id]["objects"])


def ids(results):
    return [result["image_id"] for result in results]


# -- relevance feedback --------------------------------------------------------------------------
def test_feedback_on_two_results_raises_the_attribute_precision_of_the_next_page(sample_db):
    """Every colour + kind query: 👍 on its first right result, 👎 on its first wrong one.

    The next page without feedback is results 11-20; with feedback, the first 10 of the
    re-ranked results not already shown.
    """
    before, after = [], []
    for color, kind in itertools.product(COLORS, KINDS):
        query = f"a {color} {kind}"
        plain = ids(sample_db.query(query, 20))
        first, second = plain[:10], plain[10:]
        right = [i for i in first if holds(sample_db, i, color, kind)]
        wrong = [i for i in first if not holds(sample_db, i, color, kind)]
        like, unlike = (right[:1], wrong[:1]) if right and wrong else (right[:2], wrong[:2])
        refined = ids(sample_db.query(query, 20, like=like, unlike=unlike))
        next_page = [i for i in refined if i not in first][:10]
        before.append(np.mean([holds(sample_db, i, color, kind) for i in second]))
        after.append(np.mean([holds(sample_db, i, color, kind) for i in next_page]))
    print(f"attribute precision of the next page: {np.mean(before):.3f} -> {np.mean(after):.3f}")
    raised, lowered = np.sum(np.array(after) > before), np.sum(np.array(after) < before)
    print(f"{raised} queries gain, {lowered} lose")
    assert np.mean(after) >= np.mean(before) + 0.02  # README: 0.792 -> 0.814 on the sample
    assert raised > 1.5 * lowered


def test_feedback_is_rocchio_on_the_query_vector(sample_db):
    found = sample_db.search("boat", 10)
    liked, unliked = found.results[6]["image_id"], found.results[0]["image_id"]
    refined = sample_db.search("boat", 10, like=[liked], unlike=unliked)
    embeddings = sample_db.embeddings
    text = found.query.vector.astype(np.float64)
    _, pull, push = ROCCHIO
    expected = (text + pull * embeddings[sample_db.row(liked)]
                - push * embeddings[sample_db.row(unliked)])
    np.testing.assert_allclose(refined.query.vector, expected / np.linalg.norm(expected),
                               atol=1e-5)
    top = refined.results[0]
    assert set(top["why"]) == {"boat", f"+#{liked}", f"-#{unliked}"}
    assert sum(top["why"].values()) == pytest.approx(top["score"], abs=1e-5)  # still exact
    assert refined.update.startswith("boat") and ("+ " in refined.update and "- " in refined.update)
    before, after = ids(found.results), ids(refined.results)
    assert after.index(liked) < before.index(liked)  # the liked image rises
    assert unliked not in after[:1]  # the unliked one leaves the top


def test_feedback_goes_through_the_databases_query_by_vector(sample_db, monkeypatch):
    """Every index answers the updated vector: search asks ``query_vector``, nothing else."""
    seen = []
    original = sample_db.query_vector
    monkeypatch.setattr(sample_db, "query_vector",
                        lambda vector, k: seen.append(np.array(vector)) or original(vector, k))
    refined = sample_db.search("boat", 5, like=[ids(sample_db.query("boat", 3))[2]])
    np.testing.assert_allclose(seen[-1], refined.query.vector)


def test_the_update_names_what_the_feedback_changed(sample_db):
    results = sample_db.query("house", 10)
    scenes = sample_db.dataset.scenes
    liked = next(r["image_id"] for r in results if scenes[r["image_id"]]["background"] == "snow")
    unliked = next(r["image_id"] for r in results if scenes[r["image_id"]]["background"]
                   not in ("snow", "grass"))
    update = sample_db.search("house", 10, like=[liked], unlike=[unliked]).update
    plus = update.split(" - ")[0]
    assert update.startswith("house + ") and "snow" in plus, update


def test_feedback_alone_and_bad_feedback(sample_db):
    liked = ids(sample_db.query("red kite", 3))
    alone = sample_db.search("", 5, like=liked[:2])
    assert set(ids(alone.results)[:2]) == set(liked[:2])
    with pytest.raises(ValueError, match="both liked and unliked"):
        sample_db.search("kite", 5, like=liked[:1], unlike=liked[:1])
    with pytest.raises(KeyError, match="is not in this database"):
        sample_db.search("kite", 5, like=[-1])


# -- weak matches and no match -------------------------------------------------------------------
def calibrated(model, weak_score):
    """The model with a weak-match score where training records it."""
    info = {**model.info, "calibration": {"weak_score": weak_score}}
    return SearchModel(model.image, model.text, info)


ABSENT = ["tuesday", "election results", "software license agreement", "computer keyboard"]
REAL = "a yellow ball on the sand"


@pytest.fixture(scope="module")
def weak_db(sample_db):
    """The sample model with a weak-match score halfway between what absent things get and what
    a real query gets (set here by hand: calibrating it is training's job).

    Queries of known words that no sample image shows (a weekday, abstract words, a keyboard)
    have lower best scores than a yellow ball on the sand with the default model (the printout).
    """
    absent = max(sample_db.search(query, 1).best_score for query in ABSENT)
    real = sample_db.search(REAL, 1).best_score
    print(f"best scores: absent things up to {absent:.3f}, {REAL!r} {real:.3f}")
    assert absent < real
    model = calibrated(sample_db.model, (absent + real) / 2)
    return SearchDatabase(sample_db.image_ids, sample_db.embeddings, model, sample_db.dataset)


@pytest.mark.parametrize("query", ABSENT)
def test_a_query_of_known_words_no_image_shows_says_so(weak_db, query, capsys):
    found = weak_db.search(query, 10)
    assert found.query.words and all(used for _, used, _ in found.query.words)  # known words
    assert found.no_match and all(result["weak"] for result in found.results)
    assert "no good match" in found.no_match_message()
    assert weak_db.search(query, 10, min_score="auto").results == []


def test_a_real_query_is_not_a_no_match_and_its_weak_tail_is_marked(weak_db):
    found = weak_db.search(REAL, 100)
    assert not found.no_match and found.results[0]["weak"] is False and found.results[-1]["weak"]
    weak = [result["weak"] for result in found.results]
    assert weak == sorted(weak)  # strong ones first, then the weak tail
    kept = weak_db.search(REAL, 100, min_score="auto")
    assert ids(kept.results) == [r["image_id"] for r in found.results if not r["weak"]]
    assert kept.dropped == len(found.results) - len(kept.results)
    numbered = weak_db.search(REAL, 100, min_score=0.3)
    assert all(r["score"] >= 0.3 for r in numbered.results) and numbered.results


def test_an_uncalibrated_model_marks_nothing_and_auto_says_what_to_do(sample_db):
    """A model file saved before calibration existed (the default model is calibrated now)."""
    assert weak_score_of(sample_db.model) is not None  # training calibrates the default
    info = {key: value for key, value in sample_db.model.info.items() if key != "calibration"}
    model = SearchModel(sample_db.model.image, sample_db.model.text, info)
    sample_db = SearchDatabase(sample_db.image_ids, sample_db.embeddings, model, sample_db.dataset)
    assert weak_score_of(sample_db.model) is None
    found = sample_db.search("tuesday", 5)
    assert not found.no_match and {r["weak"] for r in found.results} == {None}
    with pytest.raises(ValueError, match="no calibrated weak-match score"):
        sample_db.search("boat", 5, min_score="auto")
    with pytest.raises(ValueError, match='must be a number or "auto"'):
        resolve_min_score(sample_db.model, "high")
    for bad in ({"calibration": {"weak_score": "x"}}, {"calibration": 3}, {}):
        assert weak_score_of(SearchModel(sample_db.model.image, sample_db.model.text, bad)) is None


@pytest.fixture
def weak_cli(weak_db, monkeypatch):
    monkeypatch.setattr(cli, "database_for", lambda *args: weak_db)


def test_cli_marks_weak_matches_and_says_when_nothing_matches(weak_cli, capsys):
    assert cli.main(["search", "tuesday"]) == 0
    out, err = capsys.readouterr()
    assert out == "" and "no good match for 'tuesday'" in err and "--min-score" in err
    assert cli.main(["search", "tuesday", "--min-score", "-1", "--k", "3"]) == 0
    out, _ = capsys.readouterr()
    assert out.count("(weak match)") == 3
    assert cli.main(["search", REAL, "--k", "100", "--json", "--min-score", "auto"]) == 0
    results = json.loads(capsys.readouterr().out)
    assert results and not any(result["weak"] for result in results)
    with pytest.raises(SystemExit) as exit:
        cli.main(["search", "boat", "--min-score", "lots"])
    assert exit.value.code == 2 and "give auto or a number" in capsys.readouterr().err


def test_cli_like_and_unlike(weak_cli, weak_db, capsys):
    first = ids(weak_db.query(REAL, 10))  # a query that matches: its results are shown
    assert cli.main(["search", REAL, "--json", "--like", str(first[5]), "--unlike",
                     str(first[0])]) == 0
    out, err = capsys.readouterr()
    expected = weak_db.search(REAL, 10, like=[first[5]], unlike=[first[0]])
    # calibrated on text queries only: feedback moves the query off that scale
    assert not expected.no_match and {result["weak"] for result in expected.results} == {None}
    assert ids(json.loads(out)) == ids(expected.results)
    assert f"feedback: searching for {expected.update}" in err
    assert cli.main(["search", "--like", str(first[5])]) == 0  # feedback alone
    assert str(first[5]) in capsys.readouterr().out


# -- the search box ------------------------------------------------------------------------------
def test_thumbs_in_the_box_re_rank_and_show_the_update(sample_db):
    box = search_box(sample_db, k=10, debounce=0)
    box.query.value = "house"
    tiles = box.results.children  # tiles are reused by later searches: keep their images' ids
    like, unlike = tiles[3].image_id, tiles[0].image_id
    tiles[3].children[3].children[0].click()  # 👍
    assert box.like == [like] and box.forget.layout.display is None
    box.results.children[[t.image_id for t in box.results.children].index(unlike)] \
        .children[3].children[1].click()  # 👎
    expected = sample_db.search("house", 10, like=[like], unlike=[unlike])
    assert [tile.image_id for tile in box.results.children] == ids(expected.results)
    assert expected.update in box.message.value.replace("&amp;", "&")
    shown = [tile.image_id for tile in box.results.children]
    assert shown.index(like) < 3  # the liked house rises
    liked_tile = box.results.children[shown.index(like)]
    assert liked_tile.children[3].children[0].button_style == "success"
    box.forget.click()
    assert box.like == box.unlike == [] and box.forget.layout.display == "none"
    assert [t.image_id for t in box.results.children] == ids(sample_db.query("house", 10))
    box.results.children[0].children[3].children[0].click()
    box.query.value = "boat"  # a new query forgets the feedback
    assert box.like == [] and [t.image_id for t in box.results.children] == ids(
        sample_db.query("boat", 10))


def test_the_box_marks_weak_matches_and_says_when_nothing_matches(weak_db):
    box = search_box(weak_db, k=24, debounce=0)  # at most 24 tiles
    box.query.value = "tuesday"
    assert box.results.children == () and "No good match" in box.message.value
    assert box.show_weak.layout.display is None
    box.show_weak.click()
    assert len(box.results.children) == 24
    assert all("capstone-weak" in tile._dom_classes for tile in box.results.children)
    assert "weak match" in box.results.children[0].children[1].value
    box.query.value = REAL
    tiles = box.results.children
    weak = [tile.weak for tile in tiles]
    assert box.show_weak.layout.display == "none" and not weak[0] and weak == sorted(weak)
    assert weak == [r["weak"] for r in weak_db.query(REAL, len(tiles))]


ABSENT_THINGS = ["election results", "senate vote", "interest rates", "economy", "tuesday",
                 "computer keyboard", "banana", "bicycle", "elephant", "guitar"]


def test_a_raw_cosine_separates_absent_things_poorly_on_the_sample(sample_db):
    """The figures of README "Weak matches": why one cosine threshold marks some of each.

    Real queries of this dataset (a concept; a colour, kind and place) and queries of real words
    that no sample image shows get overlapping best scores with the default model. When a
    model separates them, this fails: update the README's caveat.
    """
    from capstone.sample.scenes import BACKGROUNDS

    def best(query):
        return sample_db.search(query, 1).results[0]["score"]

    absent = [best(query) for query in ABSENT_THINGS]
    concepts = [best(word) for word in KINDS + COLORS + BACKGROUNDS]
    scenes = [best(f"a {color} {kind} on the {place}")
              for color, kind, place in itertools.product(COLORS, KINDS, BACKGROUNDS)]
    print(f"best scores: absent things {min(absent):.2f}-{max(absent):.2f}, one concept "
          f"{min(concepts):.2f}-{max(concepts):.2f}, colour + kind + place "
          f"{min(scenes):.2f}-{max(scenes):.2f}")
    assert min(concepts + scenes) < max(absent) and min(absent) < max(concepts + scenes)


def test_calibrated_on_the_whole_database_more_unmatched_queries_are_no_match(sample_db):
    """The figures of README "The weak-match score": the share of queries called "no match"
    (their best score below the weak-match score) among queries of common words no caption uses,
    real queries (the first three content words of each validation image's first caption) and
    colour + kind queries, with the default model's score calibrated on the whole database (as
    training does now) and on the validation images only (as it did before)."""
    from capstone.course.evaluate import held_out_images, query_captions
    from capstone.pipeline.calibration import ImageWords, calibrate, unmatched_queries
    from capstone.search.rewrites import rewrite

    dataset, model = sample_db.dataset, sample_db.model
    shows = ImageWords(dataset.captions, dataset.caption_image_ids, dataset.scenes)
    val_ids = held_out_images(dataset, 1000)
    captions, owners = query_captions(dataset, val_ids)
    weak = {"validation images": calibrate(model, dataset.features_of(val_ids), val_ids, captions,
                                           owners, shows)["weak_score"],
            "whole database": weak_score_of(model)}
    queries = {"unmatched": unmatched_queries(model, shows.used_words(), 200,
                                              np.random.default_rng(5)),
               "real": [q for q in (rewrite(c, "truncated") for c in captions[::5]) if q],
               "colour + kind": [f"a {color} {kind}" for color, kind in
                                 itertools.product(COLORS, KINDS)]}
    best = {name: np.array([sample_db.search(query, 1, min_score=-1).best_score
                            for query in texts]) for name, texts in queries.items()}
    share = {(where, name): float(np.mean(best[name] < score))
             for where, score in weak.items() for name in queries}
    for where, score in weak.items():
        print(f"calibrated on the {where} ({score:.3f}): no match for "
              + ", ".join(f"{share[where, name]:.1%} of {len(queries[name])} {name}"
                          for name in queries))
    assert weak["whole database"] > weak["validation images"]  # top scores grow with the images
    assert share["whole database", "unmatched"] > share["validation images", "unmatched"] + 0.05
    assert share["whole database", "unmatched"] > 2 * share["whole database", "real"]
    assert share["whole database", "colour + kind"] <= 0.05


@pytest.mark.parametrize("kind", ["exact", "hnsw"])
def test_feedback_works_on_an_index(sample_db, kind):
    """An index answers the updated query vector as it answers any other (capstone.search.ann)."""
    from capstone.search.ann import use_index

    indexed = use_index(SearchDatabase(sample_db.image_ids, sample_db.embeddings, sample_db.model,
                                       sample_db.dataset), kind)
    first = ids(sample_db.query("a red kite", 10))
    plain = sample_db.search("a red kite", 10, like=first[3:4], unlike=first[:1])
    found = indexed.search("a red kite", 10, like=first[3:4], unlike=first[:1])
    assert found.update == plain.update
    overlap = len(set(ids(found.results)) & set(ids(plain.results)))
    assert overlap == 10 if kind == "exact" else overlap >= 8
