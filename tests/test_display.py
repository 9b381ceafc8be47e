"""Fetching images and drawing grids: never an exception, a placeholder for what cannot load."""

import numpy as np
import pytest
from PIL import Image

from capstone.ui import display
from capstone.ui.display import draw_tile, image_cache_path, load_image, show_images, tile_title

UNREACHABLE = "http://127.0.0.1:9/COCO_train2014_000000000009.jpg"


@pytest.fixture
def picture(tmp_path):
    path = tmp_path / "red.png"
    Image.new("RGB", (12, 8), (200, 10, 10)).save(path)
    return path


def texts_of(fig):
    """Every title and text drawn in a figure."""
    return [ax.get_title() for ax in fig.axes] + [t.get_text() for ax in fig.axes for t in ax.texts]


def test_a_file_url_is_read_locally(picture):
    image = load_image(picture.as_uri())
    assert image.size == (12, 8) and image.convert("RGB").getpixel((0, 0)) == (200, 10, 10)


@pytest.mark.parametrize(
    "url", ["file:///nonexistent/nothing.png", UNREACHABLE, "ftp://example.org/x.png", "", None]
)
def test_what_cannot_be_fetched_is_none(url):
    assert load_image(url, timeout=0.5) is None


def test_a_file_that_is_not_an_image_is_none(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("not an image")
    assert load_image(path.as_uri()) is None


def test_a_cached_download_is_read_from_the_cache(picture):
    url = "http://127.0.0.1:9/cached-one.png"  # unreachable: only the cache can answer
    cached = image_cache_path(url)
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(picture.read_bytes())
    try:
        assert load_image(url).size == (12, 8)
        assert load_image(url, cache=False) is None
    finally:
        cached.unlink()


def test_an_unreachable_host_is_tried_once(monkeypatch):
    calls = []
    monkeypatch.setattr(display, "_unreachable_until", {})
    real = display._download
    monkeypatch.setattr(display, "_download", lambda *a: calls.append(a) or real(*a))
    assert load_image(UNREACHABLE, timeout=0.5) is None
    assert load_image(UNREACHABLE.replace("09", "25"), timeout=0.5) is None
    assert len(calls) == 1


def test_a_grid_shows_images_titles_and_placeholders(picture):
    results = [
        {"image_id": 7, "score": 0.91234, "url": picture.as_uri(), "captions": ["A red square."]},
        {"image_id": 8, "score": 0.5, "url": "file:///nonexistent/8.png", "captions": ["Lost."]},
        {"image_id": 9, "score": 0.25, "url": UNREACHABLE, "captions": ["A long caption " * 6]},
    ]
    fig = show_images(results)
    axes = fig.axes
    assert len(axes) == 3
    assert len(axes[0].images) == 1 and not axes[1].images and not axes[2].images
    assert "0.912" in axes[0].get_title() and "#7" in axes[0].get_title()
    for ax, image_id in [(axes[1], 8), (axes[2], 9)]:
        assert any(f"image {image_id}" in text.get_text() for text in ax.texts)
    assert "Lost." in axes[1].texts[0].get_text()
    assert max(map(len, axes[2].get_title().splitlines())) <= 30  # wrapped


def test_a_grid_of_image_ids_uses_the_dataset(picture):
    from test_database import tiny_dataset

    dataset = tiny_dataset(n_images=4)
    image_ids = dataset.image_ids.tolist()
    dataset.urls[image_ids[0]] = picture.as_uri()
    fig = show_images(image_ids, dataset=dataset, scores=[1.0, 0.5, 0.25, 0.0], ncols=2)
    assert len(fig.axes) == 4 and len(fig.axes[0].images) == 1
    assert fig.axes[0].get_subplotspec().get_gridspec().get_geometry() == (2, 2)
    texts = " ".join(texts_of(fig))
    assert all(f"#{image_id}" in texts for image_id in image_ids)
    assert dataset.image_captions[image_ids[0]][0] in texts
    no_captions = show_images(image_ids[:1], False, dataset=dataset)  # (image_ids, captions, ...)
    assert no_captions.axes[0].get_title() == f"#{image_ids[0]}"


def test_scores_must_match_the_images():
    with pytest.raises(ValueError, match="2 images but 1 scores"):
        show_images([{"image_id": 1, "url": None}, {"image_id": 2, "url": None}], scores=[0.5])


def test_a_grid_draws_into_a_given_figure(picture):
    import matplotlib.pyplot as plt

    fig = plt.figure()
    result = {"image_id": 1, "score": 1.0, "url": picture.as_uri(), "captions": []}
    assert show_images([result], fig=fig) is fig
    fig.canvas.draw()
    drawn = np.asarray(fig.canvas.buffer_rgba())
    assert drawn.shape[-1] == 4 and (drawn[..., 0] > 150).any()


def test_a_grayscale_tile_is_drawn_gray_and_a_missing_one_says_so(tmp_path):
    import matplotlib.pyplot as plt

    path = tmp_path / "gray.png"
    Image.new("L", (6, 4), 90).save(path)
    _, (image_ax, missing_ax) = plt.subplots(1, 2)
    draw_tile(image_ax, path.as_uri(), "a gray one")
    drawn = np.asarray(image_ax.images[0].get_array())
    assert drawn.shape == (4, 6, 3) and (drawn == 90).all()  # RGB gray, not a colour map
    draw_tile(missing_ax, "file:///nonexistent.png", "lost", missing="gone")
    assert not missing_ax.images and [t.get_text() for t in missing_ax.texts] == ["gone"]
    assert (image_ax.get_title(), missing_ax.get_title()) == ("a gray one", "lost")
    plt.close("all")


def test_a_result_tile_shows_the_words_that_matched_most():
    result = {"image_id": 7, "score": 0.5, "url": None, "captions": ["a red boat"],
              "why": {"a": 0.01, "red": 0.09, "boat": 0.4}}
    fig = show_images([result])
    title = fig.axes[0].get_title()
    assert title.splitlines()[:3] == ["0.500  #7", "boat 0.40 · red 0.09", "a red boat"]
    assert tile_title(7, None, 0.5) == "0.500  #7"  # ids and scores alone: no words
