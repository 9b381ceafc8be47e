"""The checks after each exercise of notebooks 01-05: the student's function against the package's.

Each ``check_*`` calls the student's function on small fixed inputs, computes the same with the
package's tested code, and raises :class:`CheckFailed` (an ``AssertionError``) saying what
differs (shape, the first differing value, expected against got) and what to look at. Errors
raised by the student's own code (``NotImplementedError`` in an unanswered exercise) pass through
unchanged, so the traceback points at the student's line.

Values are compared with :func:`rel_error`, as in CS231n's assignments:
``max |x - y| / max(1e-8, |x| + |y|)``. Correct float64 code gives about 1e-12 and correct float32
code about 1e-7; a check passes below :data:`TOLERANCE` (1e-5) (or, for a value near zero, within
:data:`ABSOLUTE` of it), and each mistake of the catalogue in ``tests/test_student_edition.py``
gives 1e-2 or more.
"""

from __future__ import annotations

import math
from collections import Counter
from itertools import product

import numpy as np

TOLERANCE = 1e-5
ABSOLUTE = 1e-6  # float32 rounding of values near zero


class CheckFailed(AssertionError):
    """A student's answer differs from the package's; the message says how and where to look."""


def rel_error(x, y) -> float:
    """CS231n's relative error: ``max |x - y| / max(1e-8, |x| + |y|)`` (``inf`` with a NaN)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if np.isnan(x).any() or np.isnan(y).any():
        return math.inf
    return float(np.max(np.abs(x - y) / np.maximum(1e-8, np.abs(x) + np.abs(y)), initial=0.0))


def plain(value):
    """A mygrad Tensor's array (``.data``); anything else as it is."""
    return value.data if hasattr(value, "backward") and hasattr(value, "data") else value


def passed(message: str):
    """Say what a check verified (a passing check prints one line)."""
    print(f"check passed: {message}")


def fail(what: str, detail: str, look_at: str):
    """Raise :class:`CheckFailed` with the three parts of a readable message."""
    raise CheckFailed(f"{what}: {detail}\n  look at: {look_at}")


def assert_close(expected, got, what: str, look_at: str, tolerance: float = TOLERANCE):
    """Fail unless ``got`` has ``expected``'s shape and every value is within ``tolerance``.

    Within: a :func:`rel_error` below ``tolerance``, or an absolute difference below
    :data:`ABSOLUTE` (float32 rounding of values near zero). The message names the shape, or the
    first differing value (index, expected, got) and the rel_error.
    """
    expected = np.asarray(plain(expected), dtype=np.float64)
    got_array = np.asarray(plain(got), dtype=np.float64)
    if got_array.shape != expected.shape:
        fail(what, f"shape {got_array.shape}, expected {expected.shape}", look_at)
    differs = ~np.isclose(got_array, expected, rtol=tolerance, atol=ABSOLUTE)
    if not differs.any():
        return
    index = tuple(int(i) for i in np.argwhere(differs)[0])
    where = f" at index {index[0] if len(index) == 1 else index}" if index else ""
    fail(what, f"first differing value{where}: expected {expected[index]:.6g}, got "
               f"{got_array[index]:.6g} (rel_error {rel_error(expected, got_array):.2g} > "
               f"tolerance {tolerance:g})", look_at)


def assert_equal(expected, got, what: str, look_at: str):
    """Fail unless two integer arrays (indices, ids) are equal, naming the first difference."""
    expected, got = np.asarray(expected), np.asarray(got)
    if got.shape != expected.shape:
        fail(what, f"shape {got.shape}, expected {expected.shape}", look_at)
    if not np.array_equal(expected, got):
        first = int(np.flatnonzero(expected.ravel() != got.ravel())[0])
        fail(what, f"first difference at position {first}: expected {expected.ravel()[first]}, "
                   f"got {got.ravel()[first]} (expected {expected.tolist()}, got {got.tolist()})",
             look_at)


# -- 01: captions per image ------------------------------------------------------------------------
CAPTION_IMAGE_IDS = np.array([7, 3, 7, 9, 3, 7, 3, 9, 3, 7, 3, 9, 7, 9, 9, 9, 4, 4, 4, 4, 4, 4, 4])


def check_captions_per_image(captions_per_image):
    """``captions_per_image(caption_image_ids)`` is ``{captions per image: number of images}``."""
    expected = dict(Counter(Counter(CAPTION_IMAGE_IDS.tolist()).values()))
    got = captions_per_image(CAPTION_IMAGE_IDS.copy())
    if not isinstance(got, dict):
        fail("captions_per_image", f"returned a {type(got).__name__}, expected a dict",
             "return {number of captions: number of images with that many}")
    got = {int(key): int(value) for key, value in got.items()}
    if got != dict(sorted(expected.items())):
        fail("captions_per_image(caption_image_ids)",
             f"expected {dict(sorted(expected.items()))}, got {dict(sorted(got.items()))} "
             f"for caption_image_ids={CAPTION_IMAGE_IDS.tolist()}",
             "count the captions of each image first (np.unique(..., return_counts=True)), then "
             "count how many images have each number of captions")
    passed(f"captions_per_image gives {dict(sorted(got.items()))} for {len(CAPTION_IMAGE_IDS)} "
           "fixed caption ids")


# -- 02: IDF and se_text ---------------------------------------------------------------------------
# 80 captions in a fixed order: the first 32 hold two of the four colours, so an IDF over a batch
# (a prefix) differs from the IDF over all of them; "dog" and "boat" repeat within a caption.
COLOURS = ("red", "blue", "green", "white")
THINGS = ("dog", "boat", "kite", "car", "tree")
PLACES = ("on the water", "in the park", "near a house", "at night")
IDF_CAPTIONS = [f"A {colour} {thing} {place}." + (f" The {thing} again!" if thing in ("dog", "boat")
                                                   and place == "in the park" else "")
                for colour, thing, place in product(COLOURS, THINGS, PLACES)]
IDF_WORDS = ("a", "red", "dog", "boat", "park", "night", "water", "ship")  # "ship": in no caption
SE_TEXT_CAPTIONS = ("A red boat on the water.", "a dog, a DOG and a kite in the park",
                    "the ship at night zzq")  # "zzq" is not in the word vectors


def caption_words(captions=IDF_CAPTIONS) -> list:
    """Each caption's set of words, as the notebook passes them to ``idf``."""
    from capstone.course.text import tokenize

    return [set(tokenize(caption)) for caption in captions]


def small_glove(dim: int = 6):
    """Fixed random word vectors (gensim ``KeyedVectors``) for the words of the fixed captions."""
    from gensim.models import KeyedVectors

    from capstone.course.text import tokenize

    words = sorted({word for caption in IDF_CAPTIONS + list(SE_TEXT_CAPTIONS)
                    for word in tokenize(caption)} - {"zzq"} | {"ship"})
    glove = KeyedVectors(dim)
    glove.add_vectors(words, np.random.default_rng(0).normal(size=(len(words), dim)))
    return glove


def check_idf(idf):
    """``idf(word, caption_words)`` against :func:`capstone.course.text.idf_weights`."""
    from capstone.course.text import idf_weights

    table, n = idf_weights(IDF_CAPTIONS), len(IDF_CAPTIONS)
    for word in IDF_WORDS:
        expected = table.get(word, math.log10(n))
        got = idf(word, caption_words())
        if not np.isscalar(plain(got)) and np.ndim(plain(got)) != 0:
            fail(f"idf({word!r}, caption_words)", f"returned shape {np.shape(got)}, expected one "
                 "number", "return a single float")
        got = float(plain(got))
        if rel_error(expected, got) <= TOLERANCE:
            continue
        hint = ("the formula: log10(N / number of captions containing the word), N the number of "
                "captions; a word no caption contains weighs log10(N)")
        if expected and abs(got / expected - math.log(10)) < 1e-6:
            hint = ("the logarithm: got ln(10) = 2.303 times the expected value, a natural log; "
                    "the course's IDF uses np.log10")
        fail(f"idf({word!r}, caption_words) over {n} captions",
             f"expected {expected:.6g}, got {got:.6g} (rel_error {rel_error(expected, got):.2g})",
             hint)
    passed(f"idf of {len(IDF_WORDS)} words over {n} fixed captions equals idf_weights' "
           f"(rel_error below {TOLERANCE:g})")


def check_se_text(se_text):
    """``se_text(caption, glove, caption_words)`` against :func:`capstone.course.text.se_text`."""
    from capstone.course.text import idf_weights
    from capstone.course.text import se_text as reference

    glove, words = small_glove(), caption_words()
    table, n = idf_weights(IDF_CAPTIONS), len(IDF_CAPTIONS)
    for caption in SE_TEXT_CAPTIONS:
        what = f"se_text({caption!r}, glove, caption_words)"
        expected = reference(caption, glove, table, n)
        got = np.asarray(plain(se_text(caption, glove, words)), dtype=np.float64)
        if got.shape != expected.shape:
            fail(what, f"shape {got.shape}, expected {expected.shape}",
                 "return one vector of the word vectors' size: the sum over the caption's words")
        if not np.isfinite(got).all():
            fail(what, f"not finite: {got.round(4).tolist()}",
                 "the weighted sum was zero before scaling, so every IDF weight was 0: an IDF "
                 "computed over the caption itself (or one caption) is log10(1/1) = 0; use all "
                 "the training captions, caption_words")
        norm = float(np.linalg.norm(got))
        if abs(norm - 1) > 1e-4:
            fail(what, f"length {norm:.4g}, expected 1", "scale the sum to unit length: "
                 "vector / np.linalg.norm(vector), so that cosine is a dot product")
        assert_close(expected, got, what, "the weights: idf(word, caption_words) over all the "
                     "training captions (not one caption, not a batch), every known word counted "
                     "each time it occurs, unknown words skipped")
    passed(f"se_text of {len(SE_TEXT_CAPTIONS)} fixed captions equals the package's "
           f"(rel_error below {TOLERANCE:g})")


# -- 03: the hardest negative ----------------------------------------------------------------------
def hard_negative_data():
    """Six images (ids 10-15), two captions each, 5-d unit caption vectors; caption 0 is image 10's.

    Caption 0's own image has the captions most like it, so a draw that may include the own image
    returns it.
    """
    rng = np.random.default_rng(3)
    image_ids = np.repeat(np.arange(10, 16), 2)
    vectors = rng.normal(size=(12, 5))
    vectors[1] = vectors[0] + 0.1 * rng.normal(size=5)  # image 10's other caption
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors.astype(np.float32), image_ids, np.arange(10, 16)


def check_hard_negative(hard_negative):
    """``hard_negative(caption_row, caption_embeddings, caption_image_ids, train_ids, n_candidates,
    rng)`` against :func:`capstone.course.triples.image_text_embeddings` on fixed data."""
    from capstone.course.triples import image_text_embeddings

    embeddings, caption_image_ids, train_ids = hard_negative_data()
    own = int(caption_image_ids[0])
    image_text = image_text_embeddings(caption_image_ids - 10, embeddings, len(train_ids))
    similarity = {int(i): float(embeddings[0] @ image_text[i - 10]) for i in train_ids if i != own}
    hardest, easiest = max(similarity, key=similarity.get), min(similarity, key=similarity.get)
    results = {}
    for n_candidates, seed in product((len(train_ids) - 1, 2), range(12)):
        got = hard_negative(0, embeddings.copy(), caption_image_ids.copy(), train_ids.copy(),
                            n_candidates, np.random.default_rng(seed))
        results[n_candidates, seed] = int(np.asarray(plain(got)).item())
    what = "hard_negative(0, ...) for caption 0 of image 10"
    for (n_candidates, seed), got in results.items():
        if got == own:
            fail(what, f"returned the caption's own image {own} (n_candidates={n_candidates}, "
                       f"seed {seed})", "draw the candidates from train_ids without the "
                       "caption's own image (train_ids[train_ids != own_image]): its own picture "
                       "is no bad image")
        if got not in similarity:
            fail(what, f"returned {got}, not a training image id {train_ids.tolist()}",
                 "return an image id from the candidates")
    for seed in range(12):
        got = results[len(train_ids) - 1, seed]
        if got != hardest:
            least = " the least similar one (the easiest)" if got == easiest else ""
            fail(what, f"with every other image a candidate (n_candidates=5, seed {seed}): "
                       f"expected image {hardest} (cosine {similarity[hardest]:.3f}), got "
                       f"{got}{least} (cosine {similarity[got]:.3f})",
                 "take the candidate whose mean caption vector is MOST similar to the caption "
                 "(np.argmax of the cosines), drawing n_candidates distinct images")
    drawn = {results[2, seed] for seed in range(12)}
    if len(drawn) < 2 or easiest in drawn:
        fail(what, f"with n_candidates=2 over 12 seeds it returned {sorted(drawn)}",
             "draw n_candidates distinct random images with the given rng, then take the most "
             "similar of them")
    passed(f"hard_negative never returns the caption's own image and picks the most similar "
           f"candidate, over {len(results)} draws")


# -- 04: the loss of a batch and one training step ------------------------------------------------
def triple_batch(margin: float = 0.5):
    """A fixed batch: 6 triples of 8 features and 4-d unit captions, and an untrained 8->4 model."""
    from capstone.course.image import ImageEmbedder

    rng = np.random.default_rng(4)
    captions = rng.normal(size=(6, 4)).astype(np.float32)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    good, bad = rng.normal(size=(2, 6, 8)).astype(np.float32)
    return ImageEmbedder(8, 4, seed=0), captions, good, bad, margin


def check_batch_loss(batch_loss):
    """``batch_loss(model, captions, good_features, bad_features, margin)``: the margin ranking
    loss of a fixed batch and both cosines, against the package's unit image embeddings
    (:meth:`capstone.course.image.ImageEmbedder.embed`) and
    :func:`capstone.course.triples.triple_metrics`."""
    from mygrad.nnet.losses import margin_ranking_loss

    from capstone.course.triples import Triples, triple_metrics

    model, captions, good, bad, margin = triple_batch()
    sim_good = np.einsum("nd,nd->n", captions, model.embed(good))
    sim_bad = np.einsum("nd,nd->n", captions, model.embed(bad))
    rows = np.arange(len(captions))
    expected = triple_metrics(model.embed(np.concatenate([good, bad])), captions,
                              Triples(rows, rows, rows + len(rows)), margin)["loss"]
    got = batch_loss(model, captions.copy(), good.copy(), bad.copy(), margin)
    if not (isinstance(got, tuple) and len(got) == 3):
        fail("batch_loss", f"returned {type(got).__name__}, expected (loss, sim_good, sim_bad)",
             "return the loss and both cosines")
    normalise = ("cosine needs unit vectors: divide each embedded image (each row) by its own "
                 "length, mg.sqrt(mg.sum(x ** 2, axis=1, keepdims=True)), not the whole batch "
                 "by one norm")
    assert_close(sim_good, got[1], "sim_good, the cosines of captions and good images", normalise)
    assert_close(sim_bad, got[2], "sim_bad, the cosines of captions and bad images", normalise)
    if not hasattr(got[0], "backward"):
        fail("batch_loss", f"the loss is a {type(got[0]).__name__}, not a mygrad Tensor",
             "compute it with mygrad operations so that loss.backward() reaches M and b")
    reversed_loss = margin_ranking_loss(sim_bad, sim_good, 1, margin).item()
    hint = ("margin_ranking_loss(sim_good, sim_bad, 1, margin): the mean over the batch of "
            "max(0, margin - (sim_good - sim_bad))")
    if rel_error(reversed_loss, got[0].item()) <= TOLERANCE:
        hint = ("the sign: this is the loss of ranking bad above good; the good image's cosine "
                "must win: margin_ranking_loss(sim_good, sim_bad, 1, margin), y = 1")
    assert_close(expected, got[0].item(), f"the loss of the batch (margin {margin})", hint)
    passed(f"batch_loss of a fixed batch: loss {expected:.4f} and both cosines as the package's "
           f"(rel_error below {TOLERANCE:g})")


def check_train_step(train_step, batch_loss):
    """``train_step(model, optim, captions, good_features, bad_features, margin)``: one step.

    The expected weights are those after ``batch_loss(...)``'s ``backward()`` and one
    ``optim.step()`` of ``mynn.optimizers.SGD`` (learning rate 0.1), on a copy of the model; so
    this check holds whatever ``batch_loss`` computes.
    """
    from mynn.optimizers import SGD

    model, captions, good, bad, margin = triple_batch()
    before = [parameter.data.copy() for parameter in model.parameters]
    reference_model = triple_batch()[0]
    loss = batch_loss(reference_model, captions, good, bad, margin)[0]
    loss.backward()
    SGD(reference_model.parameters, learning_rate=0.1).step()
    expected = [parameter.data for parameter in reference_model.parameters]

    got = train_step(model, SGD(model.parameters, learning_rate=0.1), captions.copy(),
                     good.copy(), bad.copy(), margin)
    after = [parameter.data for parameter in model.parameters]
    if all(np.array_equal(b, a) for b, a in zip(before, after)):
        fail("train_step", "M and b did not change",
             "loss.backward() only computes the gradients; optim.step() applies them")
    for name, want, have in zip(("M", "b"), expected, after):
        assert_close(want, have, f"{name} after one step (SGD, learning rate 0.1)",
                     "one step is: the loss of the batch, loss.backward(), optim.step(), once each")
    if not (isinstance(got, tuple) and len(got) == 3):
        fail("train_step", f"returned {type(got).__name__}, expected (loss, sim_good, sim_bad)",
             "return what batch_loss returned")
    assert_close(loss.item(), float(plain(got[0])), "the loss train_step returned",
                 "return the batch's loss (computed before the step)")
    passed("train_step moves M and b as one SGD step of batch_loss does")


# -- 05: top-k by a matrix-vector product ---------------------------------------------------------
def top_k_data():
    """40 unit 4-d image embeddings and a unit query, fixed."""
    rng = np.random.default_rng(5)
    embeddings = rng.normal(size=(40, 4)).astype(np.float32)
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    query = rng.normal(size=4).astype(np.float32)
    return embeddings, query / np.linalg.norm(query)


def check_top_k(top_k):
    """``top_k(embeddings, query, k)`` against :func:`capstone.course.database.top_k`."""
    from capstone.course.database import top_k as reference

    embeddings, query = top_k_data()
    scores = embeddings @ query
    for k in (5, 1, 12):
        expected = reference(scores, k)
        got = np.asarray(plain(top_k(embeddings.copy(), query.copy(), k)))
        hint = ("the k highest cosines, best first: np.argpartition(-scores, k), then "
                "np.argsort(-scores[best])")
        if got.shape == expected.shape and (
                np.array_equal(got, expected[::-1]) or set(got.tolist()) == set(
                    np.argsort(scores)[:k].tolist())):
            hint = ("the order: this is an ascending sort (worst first, or the k lowest); sort "
                    "by -scores so the highest cosine comes first")
        assert_equal(expected, got, f"top_k(embeddings, query, k={k}) (image rows)", hint)
    passed("top_k gives the package's rows, best first, for k = 5, 1 and 12 of 40 fixed vectors")
