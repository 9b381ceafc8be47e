"""The notebooks' figures: caption lengths, word counts, and random vs hard negatives."""

from collections import Counter

import matplotlib.pyplot as plt
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from capstone.data.dataset import Dataset
from capstone.ui.plots import (
    caption_lengths,
    common_triples,
    plot_caption_lengths,
    plot_word_frequencies,
    show_negatives,
    word_counts,
)
from capstone.course.text import STOP_WORDS, tokenize
from capstone.course.triples import Triples

words = st.sampled_from(["a", "the", "red", "boat", "tree", "on", "water", "Dog's", "kite,"])
captions = st.lists(st.lists(words, max_size=12).map(" ".join), min_size=1, max_size=30)


@given(captions)
def test_caption_lengths_count_tokens(texts):
    lengths = caption_lengths(texts)
    assert lengths.tolist() == [len(tokenize(text)) for text in texts]


@given(captions, st.integers(1, 10), st.booleans())
def test_word_counts_are_the_most_common_tokens(texts, n, stop_words):
    counts = word_counts(texts, n, stop_words=stop_words)
    everything = Counter(word for text in texts for word in tokenize(text))
    assert len(counts) <= n
    assert all(everything[word] == count for word, count in counts)
    assert [count for _, count in counts] == sorted((c for _, c in counts), reverse=True)
    if not stop_words:
        assert {"a", "the", "on"}.isdisjoint(word for word, _ in counts)
    shown = dict(counts)
    countable = {w: c for w, c in everything.items() if stop_words or w not in STOP_WORDS}
    left_out = [c for w, c in countable.items() if w not in shown]
    assert not left_out or (len(counts) == n and max(left_out) <= counts[-1][1])


def test_plots_draw_the_data_and_refuse_empty_input():
    texts = ["a red boat on water", "a boat", "the red red kite flies high today"]
    fig = plot_caption_lengths(texts)
    assert sum(patch.get_height() for patch in fig.axes[0].patches) == len(texts)
    fig = plot_word_frequencies(texts, n=2)
    bars = {label.get_text(): bar.get_width() for label, bar in
            zip(fig.axes[0].get_yticklabels(), fig.axes[0].patches)}
    assert bars == {"red": 3, "boat": 2}
    plt.close("all")
    with pytest.raises(ValueError, match="no captions"):
        plot_caption_lengths([])
    with pytest.raises(ValueError, match="no words"):
        plot_word_frequencies(["the a", "!!"])


def small_dataset(picture_url):
    image_ids = np.array([3, 5, 8, 13], dtype=np.int64)
    texts = {3: ["a red boat"], 5: ["a green tree"], 8: ["a blue boat"], 13: ["a kite"]}
    captions = [text for image_id in image_ids for text in texts[int(image_id)]]
    return Dataset(
        name="sample", image_ids=image_ids, features=np.zeros((4, 512), np.float32),
        caption_ids=np.arange(4), caption_image_ids=image_ids.copy(), captions=captions,
        urls={3: picture_url, 5: "file:///nonexistent.png", 8: picture_url, 13: picture_url},
        image_captions=texts, scenes=None, missing_image_ids=np.zeros(0, np.int64),
        n_captions_total=4,
    )  # fmt: skip


def test_show_negatives_lines_up_the_same_caption(tmp_path):
    picture = tmp_path / "p.png"
    Image.new("RGB", (8, 8), (200, 0, 0)).save(picture)
    dataset = small_dataset(picture.as_uri())
    random = Triples(np.array([0, 1, 2]), np.array([0, 1, 2]), np.array([1, 2, 3]))
    hard = Triples(np.array([2, 0]), np.array([2, 0]), np.array([0, 2]))
    assert [a.tolist() for a in common_triples(random, hard)] == [[0, 2], [1, 0]]
    fig = show_negatives(dataset, random, hard, n=5)
    titles = [ax.get_title().replace("\n", " ") for ax in fig.axes]
    assert len(titles) == 6  # two shared captions, three tiles each
    rows = {titles[i]: titles[i + 1 : i + 3] for i in (0, 3)}
    assert rows == {
        "good: a red boat": ["random bad: a green tree", "hard bad: a blue boat"],
        "good: a blue boat": ["random bad: a kite", "hard bad: a red boat"],
    }
    assert sum(bool(ax.images) for ax in fig.axes) == 5  # image 5 cannot load: a grey tile
    plt.close("all")
    with pytest.raises(ValueError, match="share no caption"):
        show_negatives(dataset, random, Triples(np.array([3]), np.array([3]), np.array([0])))
