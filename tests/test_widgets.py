"""The live search box, driven from Python: typing, the slider, "more like this", messages."""

import asyncio
import html
import io
import threading
import time

import ipywidgets as widgets
import pytest
from PIL import Image
from test_database import tiny_dataset, tiny_model

from capstone.search.database import SearchDatabase
from capstone.search.query import format_why
from capstone.ui.widgets import (
    SYNTAX_HINT,
    cached_thumbnail,
    example_words,
    png_thumbnail,
    search_box,
    thumbnail_path,
)


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    dataset = tiny_dataset()
    picture = tmp_path_factory.mktemp("images") / "one.png"
    Image.new("RGB", (40, 30), (10, 200, 10)).save(picture)
    for image_id in dataset.image_ids[::2]:  # half the images load, half are placeholders
        dataset.urls[int(image_id)] = picture.as_uri()
    return SearchDatabase.build(tiny_model(dataset), dataset)


def classes(widget):
    return set(widget._dom_classes)


def test_the_box_has_the_css_classes_a_browser_test_finds(db):
    box = search_box(db, debounce=0)
    assert isinstance(box, widgets.VBox)
    assert "capstone-query" in classes(box.query) and box.query.continuous_update
    assert "capstone-results" in classes(box.results)
    assert "capstone-message" in classes(box.message)
    assert box.results.children == () and str(len(db)) in box.message.value  # a hint at first


def test_typing_shows_the_top_results(db):
    box = search_box(db, k=4, debounce=0)
    box.query.value = "green boat"
    expected = db.query("green boat", 4)
    tiles = box.results.children
    assert len(tiles) == 4 and all("capstone-result" in classes(tile) for tile in tiles)
    assert [tile.image_id for tile in tiles] == [result["image_id"] for result in expected]
    assert box.message.value == "" and box.message.layout.display == "none"
    for tile, result in zip(tiles, expected):
        picture, label, button, thumbs = tile.children
        like, unlike = thumbs.children
        loads = not result["url"].startswith("file:///nonexistent")
        assert isinstance(picture, widgets.Image if loads else widgets.HTML)
        if loads:
            assert picture.value[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert f"image {result['image_id']}" in picture.value
        assert f"{result['score']:.3f}" in label.value
        assert result["captions"][0].replace("'", "&#x27;") in label.value
        assert button.description == "more like this"
        assert (like.icon, unlike.icon) == ("thumbs-up", "thumbs-down")


def test_the_slider_sets_how_many(db):
    box = search_box(db, k=3, debounce=0)
    box.query.value = "tree"
    assert len(box.results.children) == 3
    box.slider.value = 7
    assert len(box.results.children) == 7


def test_a_client_cannot_raise_the_slider_past_24_results(db):
    box = search_box(db, k=3, debounce=0)
    box.query.value = "tree"
    # what a front end can send through the widget's comm (a probe sent 1e9: 2,968 images)
    box.slider.set_state({"max": 10**9})
    box.slider.set_state({"value": 10**9})
    assert box.slider.max == box.slider.value == len(box.results.children) == 24 < len(db)
    box.slider.set_state({"min": -5})
    box.slider.set_state({"value": -5})
    assert box.slider.min == box.slider.value == len(box.results.children) == 1


def test_the_slider_stops_at_the_database_size():
    dataset = tiny_dataset(n_images=10)
    small = SearchDatabase.build(tiny_model(dataset), dataset)
    box = search_box(small, k=30, debounce=0)
    assert box.slider.max == box.slider.value == 10
    box.slider.set_state({"max": 10**9})
    box.query.value = "tree"
    assert box.slider.max == len(box.results.children) == 10


def test_no_known_words_shows_a_friendly_message(db):
    box = search_box(db, debounce=0)
    box.query.value = "red car"
    box.query.value = "xqzt"
    assert box.results.children == ()
    assert "No known words in &#x27;xqzt&#x27; — try words like" in box.message.value
    assert box.message.layout.display is None
    for word in example_words(db.model, embeddings=db.embeddings):
        assert word in box.message.value
    assert box.search("blue") and box.message.value == ""


def test_more_like_this_shows_similar_images(db):
    box = search_box(db, k=5, debounce=0)
    box.query.value = "blue dog"
    tile = box.results.children[2]
    tile.children[2].click()
    expected = [result["image_id"] for result in db.similar(tile.image_id, 5)]
    assert [t.image_id for t in box.results.children] == expected
    assert expected[0] == tile.image_id and f"#{tile.image_id}" in box.message.value


def test_typing_fast_runs_one_search_after_a_pause(db, monkeypatch):
    queries = []
    search, query = db.search, db.query
    monkeypatch.setattr(db, "search", lambda text, k, **options: queries.append(text)
                        or search(text, k, **options))

    async def type_fast():
        box = search_box(db, k=3, debounce=0.05)
        for text in ["r", "re", "red", "red ", "red c", "red car"]:
            box.query.value = text
        await asyncio.sleep(0.02)
        assert queries == []
        for _ in range(100):
            await asyncio.sleep(0.02)
            if box.results.children:
                return box
        raise AssertionError("no results after 2 s")

    box = asyncio.run(type_fast())
    assert queries == ["red car"]
    assert [t.image_id for t in box.results.children] == [
        result["image_id"] for result in query("red car", 3)
    ]


def test_a_slow_stale_search_never_replaces_a_newer_one(db, monkeypatch):
    search, query, started = db.search, db.query, threading.Event()

    def slow_for_boat(text, k, **options):
        if text == "boat":
            started.set()
            time.sleep(0.3)
        return search(text, k, **options)

    monkeypatch.setattr(db, "search", slow_for_boat)

    async def scenario():
        box = search_box(db, k=2, debounce=0.01)
        box.query.value = "boat"
        while not started.is_set():
            await asyncio.sleep(0.01)
        box.query.value = "car"
        await asyncio.sleep(0.6)  # the boat search finishes last
        return box

    box = asyncio.run(scenario())
    assert [t.image_id for t in box.results.children] == [r["image_id"] for r in query("car", 2)]


def test_the_hint_names_the_syntax_and_useful_words(db):
    box = search_box(db, debounce=0)
    words = example_words(db.model, embeddings=db.embeddings)
    assert len(words) == 3 and all(word in box.message.value for word in words)
    assert "-word" in SYNTAX_HINT and "2:word" in SYNTAX_HINT
    assert html.escape(SYNTAX_HINT) in box.message.value


def test_a_corrected_query_says_what_it_searched_for(db):
    box = search_box(db, k=4, debounce=0)
    box.query.value = "a gren baot"
    assert box.message.value == "showing results for: a <b>green</b> <b>boat</b>"
    assert box.message.layout.display is None
    assert [t.image_id for t in box.results.children] == [
        r["image_id"] for r in db.query("a green boat", 4)]
    box.query.value = "a green boat"  # nothing corrected: no message
    assert box.message.value == "" and box.message.layout.display == "none"


def test_each_tile_shows_the_words_that_matched_most(db):
    box = search_box(db, k=5, debounce=0)
    box.query.value = "red boat -grass"
    results = db.query("red boat -grass", 5)
    for tile, result in zip(box.results.children, results, strict=True):
        label = tile.children[1].value
        assert tile.why == format_why(result["why"]) != ""
        assert html.escape(tile.why) in label
        top = max(result["why"], key=result["why"].get)
        assert tile.why.startswith(f"{top} {result['why'][top]:.2f}")


def test_more_like_this_then_typing_steers_from_the_image(db):
    box = search_box(db, k=5, debounce=0)
    box.query.value = "blue dog"
    image_id = box.results.children[1].image_id
    box.results.children[1].children[2].click()
    assert box.anchor == image_id and box.query.value == ""
    assert box.clear.layout.display is None
    box.query.value = "grass"
    expected = db.search("grass", 5, image=image_id).results
    assert [t.image_id for t in box.results.children] == [r["image_id"] for r in expected]
    assert f"#{image_id}" in box.message.value and "grass" in box.message.value
    assert f"#{image_id}" in box.results.children[0].why or "grass" in box.results.children[0].why
    box.clear.click()
    assert box.anchor is None and box.clear.layout.display == "none"
    assert [t.image_id for t in box.results.children] == [
        r["image_id"] for r in db.query("grass", 5)]


def test_the_diverse_checkbox_drops_near_duplicates(db):
    twins = db.embeddings.copy()
    twins[1::2] = twins[::2]  # every other image a copy of the one before
    db = SearchDatabase(db.image_ids, twins, db.model, db.dataset)
    assert db.query("tree", 6, dedup=True) != db.query("tree", 6)
    box = search_box(db, k=6, debounce=0)
    box.query.value = "tree"
    box.diverse.value = True
    expected = db.query("tree", 6, dedup=True)
    assert [t.image_id for t in box.results.children] == [r["image_id"] for r in expected]
    box.diverse.value = False
    assert [t.image_id for t in box.results.children] == [r["image_id"] for r in db.query("tree", 6)]


def test_a_thumbnail_is_made_once_and_read_by_every_kernel_after(tmp_path, monkeypatch):
    from capstone.ui import widgets as module

    picture = tmp_path / "photo.png"
    Image.new("RGB", (400, 300), (200, 10, 10)).save(picture)
    made = []
    monkeypatch.setattr(module, "png_thumbnail", lambda image, size: made.append(size)
                        or png_thumbnail(image, size))
    png = cached_thumbnail(picture.as_uri(), 100)
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and Image.open(io.BytesIO(png)).size == (100, 75)
    assert cached_thumbnail(picture.as_uri(), 100) == png and made == [100]  # read, not made
    assert thumbnail_path(picture.as_uri(), 100).read_bytes() == png
    Image.new("RGB", (40, 40), (10, 10, 200)).save(picture)  # an edited image: a new thumbnail
    assert cached_thumbnail(picture.as_uri(), 100) != png and made == [100, 100]
    assert cached_thumbnail((tmp_path / "gone.png").as_uri(), 100) is None
