"""The sample's feature extractor: shape, determinism, invariances, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageDraw

from capstone.sample import features
from capstone.sample.features import FEATURE_DIM, extract_features

# the blocks in order, as the module docstring lists them: name -> number of dims
BLOCK_SIZES = {
    "colour": features.COLOR_LEVELS**3,
    "colour_layout": features.GRID**2 * features.LAYOUT_COLOR_LEVELS**3,
    "edge_layout": features.GRID**2 * features.ORIENTATIONS,
    "edge_density": 1,
    "shape_max": features.N_FILTERS,
    "shape_mean": features.N_FILTERS,
}


def block(vectors, name):
    """The columns of one named block."""
    start = 0
    for block_name, size in BLOCK_SIZES.items():
        if block_name == name:
            return vectors[:, start : start + size]
        start += size
    raise KeyError(name)


def random_images(seed, n, height, width):
    return np.random.default_rng(seed).integers(0, 256, (n, height, width, 3), dtype=np.uint8)


def test_blocks_add_up_to_512_and_the_old_import_path_still_works():
    from capstone.sample import features as old_path

    assert old_path.extract_features is extract_features
    assert sum(BLOCK_SIZES.values()) == FEATURE_DIM == 512
    assert list(features.BLOCK_SCALES) == list(BLOCK_SIZES)


@settings(max_examples=20, deadline=None)
@given(
    seed=st.integers(0, 2**16),
    n=st.integers(0, 3),
    height=st.integers(24, 70),
    width=st.integers(24, 70),
)
def test_any_size_gives_non_negative_float32_rows(seed, n, height, width):
    vectors = extract_features(random_images(seed, n, height, width))
    assert vectors.shape == (n, 512) and vectors.dtype == np.float32
    assert np.isfinite(vectors).all() and (vectors >= 0).all()


def test_same_pixels_same_bytes_and_batches_do_not_mix():
    images = random_images(0, features.BATCH_SIZE + 3, 24, 32)
    together = extract_features(images)
    assert together.tobytes() == extract_features(images.copy()).tobytes()
    one_by_one = np.concatenate([extract_features(images[i : i + 1]) for i in range(len(images))])
    np.testing.assert_allclose(together, one_by_one, rtol=1e-6, atol=1e-6)


def test_plain_image_has_one_colour_and_no_edges():
    image = np.zeros((1, 48, 48, 3), np.uint8)
    image[..., 0] = 255  # pure red
    vector = extract_features(image)
    colour = block(vector, "colour")[0]
    assert np.count_nonzero(colour) == 1 and colour.max() == pytest.approx(11.0)
    for name in ("edge_layout", "edge_density", "shape_max", "shape_mean"):
        assert not block(vector, name).any(), name


@given(image=st.integers(0, 2**16).map(lambda seed: random_images(seed, 1, 40, 56)))
@settings(max_examples=10, deadline=None)
def test_colour_histogram_ignores_where_pixels_are(image):
    shuffled = image.reshape(-1, 3)[np.random.default_rng(0).permutation(40 * 56)]
    before, after = extract_features(image), extract_features(shuffled.reshape(image.shape))
    np.testing.assert_allclose(block(before, "colour"), block(after, "colour"), rtol=1e-6)
    assert not np.allclose(block(before, "shape_max"), block(after, "shape_max"))


def draw_shape(points, offset):
    """A dark polygon on a plain light 96x96 canvas, moved by ``offset`` pixels."""
    image = Image.new("RGB", (96, 96), (200, 220, 240))
    moved = [(x + offset[0], y + offset[1]) for x, y in points]
    ImageDraw.Draw(image).polygon(moved, (200, 30, 30), (20, 20, 20), 2)
    return np.asarray(image)[None]


@settings(max_examples=15, deadline=None)
@given(
    points=st.lists(st.tuples(st.integers(20, 40), st.integers(20, 40)), min_size=3, max_size=6),
    cells=st.tuples(st.integers(0, 4), st.integers(0, 4)),
)
def test_shape_responses_do_not_depend_on_position(points, cells):
    """Moving an object by whole 8-pixel cells leaves the pooled shape responses unchanged.

    (The object stays two cells away from the border, so every 3x3 cell block that sees it
    exists in both places.)
    """
    here = extract_features(draw_shape(points, (0, 0)))
    there = extract_features(draw_shape(points, (8 * cells[0], 8 * cells[1])))
    for name in ("colour", "shape_max", "shape_mean"):
        np.testing.assert_allclose(block(here, name), block(there, name), rtol=1e-5, atol=1e-6)


def test_different_shapes_give_different_shape_responses():
    square = draw_shape([(20, 20), (50, 20), (50, 50), (20, 50)], (0, 0))
    triangle = draw_shape([(20, 50), (50, 50), (35, 20)], (0, 0))
    responses = [block(extract_features(image), "shape_max") for image in (square, triangle)]
    assert np.abs(responses[0] - responses[1]).max() > 0.1


@pytest.mark.parametrize(
    "images, message",
    [
        (np.zeros((2, 32, 32, 3), np.float32), "uint8"),
        (np.zeros((32, 32, 3), np.uint8), "shape"),
        (np.zeros((1, 32, 32, 4), np.uint8), "shape"),
        (np.zeros((1, 16, 64, 3), np.uint8), "at least 24x24"),
    ],
)
def test_bad_input_says_what_is_needed(images, message):
    with pytest.raises(ValueError, match=message):
        extract_features(images)
