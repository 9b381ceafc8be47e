"""Queries people type: parsing, typo correction, query arithmetic and explained results.

``se_text`` is a weighted sum of word vectors, so a query can say more than a caption and every
result's score can be split back into words:

- **Typos** are corrected. A word the model cannot embed (not in GloVe, or only in GloVe's long
  tail of rare strings, most of them misspellings) becomes the nearest known word by edit
  distance with adjacent transpositions (rapidfuzz's ``OSA``); ties go to a training-caption
  word, then to a slip to a neighbouring key, then to the more frequent word. A word too far
  from every known word is left out. Common GloVe words that no caption uses ("ship",
  "winter") are real words and are kept.
- **Arithmetic:** ``-word`` subtracts the word, ``2:word`` or ``word:2`` weighs it twice, and
  images can join the text (``image=`` of :func:`search`): the query is the text, scaled to
  :data:`TEXT_WEIGHT`, plus each image's unit embedding.
- **Explanations:** a result's cosine score is ``raw . e / ||raw||`` for the query's raw sum
  ``raw`` of weighted vectors, so it splits exactly into one share per word (and image):
  ``why[word] = weight * vector . e / ||raw||`` sums to the score.
- **One path:** every word's vector is ``se_text``'s own term of it, from the model's text
  embedder (:meth:`capstone.course.text.TextEmbedder.terms`); correction and arithmetic only
  change which words count and how much, so a plain query's vector is ``se_text`` of its text.
- **Diversity** (``dedup=``): a result within a cosine threshold of a better-ranked result is
  dropped, as clip-retrieval does.
- **Relevance feedback** (``like=``, ``unlike=``): Rocchio's update of the query vector,
  ``q' = a q + b mean(liked) - c mean(unliked)`` over unit vectors (:data:`ROCCHIO`); the
  images become parts of the query (``why`` keys ``+#image_id`` and ``-#image_id``), and
  :attr:`Search.update` names the vocabulary words nearest what the update added.
- **Weak matches:** a model calibrated at training time records the score below which a result
  is more often wrong than right (``model.info["calibration"]["weak_score"]``); results below
  it are marked ``weak``, ``min_score="auto"`` drops them, and :attr:`Search.no_match` says
  when not one result reaches it.
"""

from __future__ import annotations

import math
import re
import weakref
from dataclasses import dataclass, field

import numpy as np
from rapidfuzz import process
from rapidfuzz.distance import OSA

from capstone.course.stop_words import STOP_WORDS
from capstone.course.text import tokenize

COMMON_WORDS = 50_000  # GloVe lists words by frequency; below this rank they are real words
MAX_QUERY_CHARS = 1_000  # a longer "query" is a file read by mistake, not something typed
# Image-to-image cosines run far higher than text-to-image ones, so beside images the text counts
# this many times one image: on the sample, "night" + an image then finds night scenes with the
# image's kind of object most often (2 and 3 do a little worse, 1 hardly steers).
TEXT_WEIGHT = 2.5
MAX_MULTIPLIER = 100.0  # the largest weight a query may give a word (``100:boat``)
DEDUP_THRESHOLD = 0.94  # clip-retrieval's default for near-duplicate images
# Rocchio's weights of the query, the liked images and the unliked ones (unit vectors). With the
# default model, one like and one unlike on a colour + kind query's first page raise the next
# page's attribute precision most with small pulls: (1, 0.05, 0.2) 0.792 -> 0.814 on the sample,
# 0.814 -> 0.852 on a sample of another seed; (1, 0.1, 0.2), best for the earlier default, gains
# less (0.806, 0.848) and larger pulls less still: one image drags in its background and other
# objects, and an unliked one of the right kind pushes the kind away. tests/test_feedback.py
# checks the gain.
ROCCHIO = (1.0, 0.05, 0.2)
UPDATE_WORDS = 2  # words named for what liked images added, and for what unliked ones took away
SHARE_SHOWN = 0.005  # a share that prints as 0.00 says nothing: not shown under a result
NUMBER_WORDS = frozenset(
    "zero one two three four five six seven eight nine ten eleven twelve dozen hundred "
    "thousand million first second third single pair couple several".split()
)
QWERTY_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_TERM = re.compile(r"^(?P<sign>[-+]?)(?:(?P<before>\d+(?:\.\d+)?):)?(?P<word>.*?)"
                   r"(?::(?P<after>-?\d+(?:\.\d+)?))?$")


# -- parsing -------------------------------------------------------------------------------------
def parse(text: str) -> list[tuple[str, float]]:
    """``(word, multiplier)`` per word of a query: ``-word`` is -1, ``2:word``/``word:2`` is 2.

    Words are tokenised as captions are (:func:`capstone.course.text.tokenize`), so a plain query
    gives each of its words multiplier 1.

    >>> parse("a red -water 2:boat sky:0.5")
    [('a', 1.0), ('red', 1.0), ('water', -1.0), ('boat', 2.0), ('sky', 0.5)]
    """
    if not isinstance(text, str):
        raise TypeError(f"a query must be a str, got {type(text).__name__}")
    if len(text) > MAX_QUERY_CHARS:
        raise ValueError(f"a query of {len(text):,} characters is too long: keep it under "
                         f"{MAX_QUERY_CHARS:,} (a few words work best)")
    terms = []
    for piece in text.split():
        match = _TERM.match(piece)
        multiplier = float(match["before"] or match["after"] or 1.0)
        if not abs(multiplier) <= MAX_MULTIPLIER:  # 400 nines is inf: every score would be 0
            weight = match["before"] or match["after"]
            weight = weight if len(weight) <= 20 else f"{weight[:8]}...({len(weight)} digits)"
            raise ValueError(f"the weight {weight} of {match['word'][:40]!r} is too large: give "
                             f"a weight up to {MAX_MULTIPLIER:g}, e.g. 2:boat")
        if match["sign"] == "-":
            multiplier = -multiplier
        terms += [(word, multiplier) for word in tokenize(match["word"])]
    return terms


# -- typo correction -----------------------------------------------------------------------------
def keyboard_neighbours(letter: str) -> str:
    """The keys around ``letter`` on a QWERTY keyboard (rows offset by half a key).

    >>> keyboard_neighbours("g")
    'fhtyvb'
    """
    for row, keys in enumerate(QWERTY_ROWS):
        column = keys.find(letter)
        if column < 0:
            continue
        around = [keys[column - 1] if column else "", keys[column + 1 : column + 2]]
        if row > 0:  # the row above is shifted half a key left
            around.append(QWERTY_ROWS[row - 1][column : column + 2])
        if row < 2:
            around.append(QWERTY_ROWS[row + 1][max(column - 1, 0) : column + 1])
        return "".join(around)
    return ""


def is_slip(typed: str, word: str) -> bool:
    """Whether ``typed`` is ``word`` with one letter replaced by a neighbouring key."""
    if len(typed) != len(word):
        return False
    changed = [(a, b) for a, b in zip(typed, word) if a != b]
    return len(changed) == 1 and changed[0][0] in keyboard_neighbours(changed[0][1])


class Corrector:
    """Corrects a query's unknown words to the nearest words a text embedder knows.

    Parameters
    ----------
    text : capstone.course.text.TextEmbedder
        Its GloVe says which words are real; its ``vocab`` and ``idf`` say which the training
        captions use, and how often.
    common : int
        GloVe words ranked below this are real words even if no caption uses them.
    """

    def __init__(self, text, common: int = COMMON_WORDS):
        self.glove, self.common = text.glove, common
        self.idf = dict(zip(map(str, text.vocab), map(float, text.idf)))
        self.caption_words = list(self.idf)
        self._rank = self._by_length = None  # read on the first word to correct (a tenth of a s)

    @property
    def rank(self) -> dict:
        """GloVe's common words that no caption uses, and their frequency ranks."""
        if self._rank is None:
            self._rank, self._by_length = {}, {}
            for rank, word in enumerate(self.glove.index_to_key[: self.common]):
                if word.isalnum() and word not in self.idf:
                    self._rank[word] = rank
                    self._by_length.setdefault(len(word), []).append(word)
        return self._rank

    @property
    def by_length(self) -> dict:
        """:attr:`rank`'s words by their length."""
        return self.rank and self._by_length

    def is_known(self, word: str) -> bool:
        """A caption word, or a common GloVe word: never corrected."""
        return word in self.idf or self.glove.key_to_index.get(word, math.inf) < self.common

    @staticmethod
    def max_distance(word: str) -> int:
        """Edits allowed: 1 for words of up to 4 letters, 2 for longer ones."""
        return 1 if len(word) <= 4 else 2

    @staticmethod
    def _order(typed, word, distance, frequency) -> tuple:
        return distance, not is_slip(typed, word), frequency

    def correct(self, word: str) -> str | None:
        """``word`` if known, else the nearest known word, else ``word`` if in GloVe, else None.

        Nearest: the fewest edits (insertion, deletion, substitution, adjacent transposition),
        then a training-caption word before any other, then a slip of a finger to a
        neighbouring key (:func:`is_slip`) before other edits, then the most frequent.
        """
        if self.is_known(word):
            return word
        best, distance = None, self.max_distance(word) + 1
        hits = process.extract(word, self.caption_words, scorer=OSA.distance, limit=None,
                               score_cutoff=distance - 1)
        if hits:
            best, distance = min(((w, d) for w, d, _ in hits),
                                 key=lambda hit: self._order(word, *hit, self.idf[hit[0]]))
        if distance > 1:  # a common word may be nearer: only lengths within the distance can be
            near = [w for n in range(len(word) - distance + 1, len(word) + distance)
                    for w in self.by_length.get(n, ())]
            hits = process.extract(word, near, scorer=OSA.distance, limit=None,
                                   score_cutoff=distance - 1)
            if hits:
                best = min(((w, d) for w, d, _ in hits),
                           key=lambda hit: self._order(word, *hit, self.rank[hit[0]]))[0]
        if best is None and word in self.glove.key_to_index:
            return word  # a rare GloVe word near no known word
        return best


_correctors: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def corrector_for(text) -> Corrector:
    """The :class:`Corrector` of a text embedder (built once per embedder)."""
    if text not in _correctors:
        _correctors[text] = Corrector(text)
    return _correctors[text]


# -- the query vector ----------------------------------------------------------------------------
@dataclass
class Query:
    """A parsed query as vectors: ``raw`` is the weighted sum, ``vector`` it at unit length.

    Attributes
    ----------
    text : str
        As typed.
    words : list of (str, str or None, float)
        ``(typed, used, multiplier)`` per word; ``used`` is the corrected word, ``None`` when
        unknown.
    keys : list of str
        What each row of ``parts`` is called in ``why``: a word, or ``#image_id``.
    parts : ndarray, shape (n_parts, D)
        The terms of ``raw``: ``raw = parts.sum(axis=0)``.
    image_ids : list of int
        The images that joined the query.
    feedback : dict
        ``{"like": [...], "unlike": [...]}`` image ids of relevance feedback (empty: none).
    """

    text: str
    words: list = field(default_factory=list)
    keys: list = field(default_factory=list)
    parts: np.ndarray | None = None
    image_ids: list = field(default_factory=list)
    feedback: dict = field(default_factory=dict)

    @property
    def raw(self) -> np.ndarray:
        return self.parts.sum(axis=0)

    @property
    def vector(self) -> np.ndarray:
        """The unit query vector (float32)."""
        raw = self.raw
        return (raw / np.linalg.norm(raw)).astype(np.float32)

    @property
    def corrections(self) -> dict[str, str]:
        """``{typed: corrected}`` for each corrected word."""
        return {typed: used for typed, used, _ in self.words if used and used != typed}

    def corrected_text(self, mark=lambda word: word) -> str:
        """The words searched for, corrected ones passed through ``mark`` (e.g. to bold them).

        Unknown words are left out; multipliers are shown as typed (``-water``, ``2:red``).
        """
        shown = []
        for typed, used, multiplier in self.words:
            if used is None:
                continue
            word = mark(used) if used != typed else used
            prefix = "-" if multiplier == -1 else "" if multiplier == 1 else f"{multiplier:g}:"
            shown.append(prefix + word)
        return " ".join(shown)


def build_query(model, text: str = "", image_vectors=None, image_ids=(), *,
                correct: bool = True) -> Query:
    """Parse, correct and weigh a query into vectors; ``ValueError`` when nothing is known.

    Parameters
    ----------
    model : capstone.data.model.SearchModel
    text : str
        The query (see :func:`parse`); may be empty when images are given.
    image_vectors : array-like, shape (n, D), optional
        Unit embeddings of images that join the query, one per ``image_ids`` entry (their
        ``why`` keys are ``#image_id``).
    correct : bool
        Correct typos (:class:`Corrector`); ``False`` leaves unknown words out, as ``se_text``.
    """
    parsed = parse(text)
    # the model's own vocabulary's vectors when they cover every word; else the full GloVe
    embedder = model.text_for([" ".join(word for word, _ in parsed)])
    corrector = corrector_for(embedder) if correct else None
    glove = embedder.glove
    query = Query(text, image_ids=list(image_ids))
    net: dict[str, float] = {}  # each known word's multipliers, added up (a repeat counts twice)
    for typed, multiplier in parsed:
        if corrector is not None:
            used = corrector.correct(typed)
        else:  # as se_text: a word not in GloVe adds nothing
            used = typed if typed in glove.key_to_index else None
        query.words.append((typed, used, multiplier))
        if used is not None:
            net[used] = net.get(used, 0.0) + multiplier
    words = list(net)
    vectors = embedder.terms(words)  # se_text's term of each word (0: a dropped stop word)
    multipliers = np.array([net[word] for word in words])
    keep = vectors.any(axis=1) & (multipliers != 0)
    keys = [word if net[word] > 0 else f"-{word}" for word in np.array(words)[keep].tolist()]
    parts = multipliers[keep, None] * vectors[keep]
    if image_ids:  # beside unit images, the text as typed counts TEXT_WEIGHT (its plain sum's norm)
        plain = np.linalg.norm(vectors[keep].sum(axis=0))
        keys, parts = (keys, TEXT_WEIGHT * parts / plain) if plain > 0 else ([], parts[:0])
        images: dict[str, np.ndarray] = {}  # an image given twice counts twice, as a word
        for image_id, vector in zip(image_ids, np.asarray(image_vectors, np.float64)):
            images[f"#{image_id}"] = images.get(f"#{image_id}", 0.0) + vector
        keys += list(images)
        parts = np.vstack([parts, *images.values()])
    query.keys, query.parts = keys, parts
    if len(parts) and np.linalg.norm(query.raw) > 1e-9:
        return query
    if vectors.any():
        raise ValueError(f"the words of query {text!r} cancel out: add a word, or drop a -word")
    ignored = " (common words such as 'the' are ignored)" if embedder.stop_words else ""
    raise ValueError(f"no known words in query {text!r}{ignored}: try ordinary English words "
                     'such as "dog" or "boat"')


# -- weak matches --------------------------------------------------------------------------------
def weak_score_of(model) -> float | None:
    """The score below which a result is a weak match: ``info["calibration"]["weak_score"]``.

    ``None`` for a model trained before calibration existed (or with a damaged record).
    """
    info = getattr(model, "info", None) or {}
    calibration = info.get("calibration") if isinstance(info, dict) else None
    value = calibration.get("weak_score") if isinstance(calibration, dict) else None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def resolve_min_score(model, min_score) -> float | None:
    """``min_score`` as a number; ``"auto"``: the model's weak-match score (:func:`weak_score_of`).

    ``ValueError`` (one line, what to do) for ``"auto"`` with an uncalibrated model, or for
    something that is not a finite number.
    """
    if min_score is None:
        return None
    if isinstance(min_score, str) and min_score.strip().lower() == "auto":
        weak = weak_score_of(model)
        if weak is None:
            raise ValueError("this model has no calibrated weak-match score (it was trained "
                             "before calibration): train it again, or give a number such as "
                             "--min-score 0.3")
        return weak
    try:
        value = float(min_score)
    except (TypeError, ValueError):
        value = math.nan
    if not math.isfinite(value):
        raise ValueError(f'min_score must be a number or "auto", got {min_score!r}')
    return value


# -- relevance feedback --------------------------------------------------------------------------
def image_ids_of(images) -> list[int]:
    """A list of image ids from ``None``, one id or a sequence of them."""
    return [] if images is None else [int(i) for i in np.atleast_1d(np.asarray(images))]


def apply_feedback(query: Query, like_vectors, like_ids, unlike_vectors, unlike_ids,
                   weights=None) -> Query:
    """Rocchio's update of ``query``: ``a q + b mean(liked) - c mean(unliked)``, in place.

    ``q`` is the query scaled to unit length; each liked image joins the query as a part
    ``b / n_liked * e`` (key ``+#image_id``), each unliked one as ``-c / n_unliked * e``
    (``-#image_id``), so ``why`` still splits every score exactly.
    """
    alpha, beta, gamma = ROCCHIO if weights is None else weights
    parts = [alpha * query.parts / np.linalg.norm(query.raw)] if len(query.parts) else []
    keys = list(query.keys)
    for sign, weight, ids, vectors in ((1, beta, like_ids, like_vectors),
                                       (-1, gamma, unlike_ids, unlike_vectors)):
        if len(ids):
            parts.append(sign * weight / len(ids) * np.asarray(vectors, np.float64))
            keys += [f"{'+' if sign > 0 else '-'}#{image_id}" for image_id in ids]
    query.parts = np.vstack(parts)
    query.keys = keys
    query.feedback = {"like": list(like_ids), "unlike": list(unlike_ids)}
    return query


_word_tables: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def update_vocabulary(model) -> tuple[dict, np.ndarray]:
    """``({word: row}, unit vectors)`` of the words that may name a feedback update.

    The training captions' words (what image embeddings were trained towards), alphabetic and
    not stop words, with the model's vocabulary vectors (no full GloVe read); once per model.
    """
    text = model.text_for([])  # the vocabulary's own vectors when the model file holds them
    if text not in _word_tables:
        words = [str(word) for word in np.asarray(text.vocab)
                 if str(word).isalpha() and word not in STOP_WORDS]
        vectors = np.array([text.glove[word] for word in words], np.float64)
        vectors = vectors.reshape(len(words), text.dim)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True).clip(1e-12)
        _word_tables[text] = ({word: row for row, word in enumerate(words)}, vectors)
    return _word_tables[text]


def describe_update(db, query: Query, page, n: int = UPDATE_WORDS) -> str:
    """The updated query as words, e.g. ``"boat + red - water"``.

    The typed words, then for each side of the feedback the ``n`` words nearest the direction
    from the page shown (``page``: the image ids the query found before feedback) to the liked
    images (``+``) or to the unliked ones (``-``): what the update pulls towards or pushes away
    from. Candidates are the words of the judged images' captions (any caption word when the
    database has none) that are not already in the query, nor a plural of one of its words.
    """
    shown = query.corrected_text()
    rows, vectors = update_vocabulary(db.model)
    page_rows = [db.row(image_id) for image_id in page]
    typical = (db.embeddings[page_rows] if page_rows else db.embeddings).mean(axis=0)
    used = {used for _, used, _ in query.words if used}
    terms = []
    for sign, side in (("+", "like"), ("-", "unlike")):
        ids = query.feedback.get(side) or []
        if not ids:
            continue
        direction = db.embeddings[[db.row(image_id) for image_id in ids]].mean(axis=0) - typical
        captions = [caption for image_id in ids for caption in db.result(image_id, 0)["captions"]]
        candidates = {word for caption in captions for word in tokenize(caption)} or set(rows)
        candidates = [word for word in sorted(candidates) if word in rows]
        scores = vectors[[rows[word] for word in candidates]] @ direction if candidates else []
        chosen = []
        for i in np.argsort(-np.asarray(scores), kind="stable"):
            word = candidates[i]
            if len(chosen) == n or not scores[i] > 0:
                break
            if not any(word.startswith(u) or u.startswith(word) for u in used):
                chosen.append(word)  # "night", then not "nighttime"
                used.add(word)
        terms += [f"{sign} {word}" for word in chosen]
    return " ".join([shown, *terms]).strip()


# -- searching -----------------------------------------------------------------------------------
@dataclass
class Search:
    """What :meth:`capstone.search.database.SearchDatabase.search` returns.

    Attributes
    ----------
    results : list of dict
        ``image_id``, ``score``, ``url``, ``captions``, ``why`` (``{word: share of score}``) and
        ``weak`` (the score is below the model's weak-match score; ``None``: not calibrated),
        best first.
    query : Query
        The parsed query; ``query.corrected_text()`` is what was searched for.
    weak_score : float or None
        The model's weak-match score (:func:`weak_score_of`).
    update : str
        The query as words, with what feedback changed (``"boat + red - water"``); see
        :func:`describe_update`.
    dropped : int
        Results left out by ``min_score``.
    best_score : float or None
        The best score of any image, dropped or not.
    """

    results: list
    query: Query
    weak_score: float | None = None
    update: str = ""
    dropped: int = 0
    best_score: float | None = None

    @property
    def corrections(self) -> dict[str, str]:
        """``{typed: corrected}`` for each corrected word (empty when none)."""
        return self.query.corrections

    @property
    def no_match(self) -> bool:
        """No image reaches the model's weak-match score (``False`` when it has none)."""
        return self.weak_score is not None and (self.best_score is None
                                                or self.best_score < self.weak_score)

    def no_match_message(self) -> str:
        """One line saying that nothing matches well, and how well the best one did."""
        best = "" if self.best_score is None else f" (best score {self.best_score:.3f})"
        return (f"no good match for {self.query.text!r}: no image scores above the weak-match "
                f"score {self.weak_score:.3f}{best}; try other words")


def top_words(why: dict, n: int = 3) -> list[tuple[str, float]]:
    """The ``n`` largest shares of a result's ``why`` that say something, largest first.

    Stop words and shares that would print as 0.00 (below :data:`SHARE_SHOWN`) are left out.
    """
    ranked = sorted(why.items(), key=lambda item: -item[1])
    return [(key, share) for key, share in ranked
            if share >= SHARE_SHOWN and key not in STOP_WORDS][:n]


def format_why(why: dict, n: int = 3) -> str:
    """The words that matched most, e.g. ``"boat 0.34 · red 0.12"`` (empty for none)."""
    return " · ".join(f"{key} {share:.2f}" for key, share in top_words(why, n))


def dedup_rows(embeddings: np.ndarray, order, k: int, threshold: float) -> list:
    """The first ``k`` rows of ``order`` (best first) not within ``threshold`` of a kept one."""
    kept = []
    for row in order:
        if not kept or (embeddings[kept] @ embeddings[row]).max() < threshold:
            kept.append(int(row))
            if len(kept) == k:
                break
    return kept


def search(db, text: str = "", k: int = 10, *, image=None, dedup=False, correct=True,
           like=None, unlike=None, min_score=None) -> Search:
    """Search ``db`` for a query that may hold typos, ``-word``, ``2:word``, images and feedback.

    Parameters
    ----------
    db : capstone.search.database.SearchDatabase
    text : str
        The query (see :func:`parse`); may be empty when ``image`` or ``like`` is given.
    k : int
        Number of results.
    image : int or sequence of int, optional
        Image ids of the database to add to the query ("more like this, but at night").
    dedup : bool or float
        Drop results within this cosine (``True``: :data:`DEDUP_THRESHOLD`) of a better one.
    correct : bool
        Correct typos.
    like, unlike : int or sequence of int, optional
        Relevance feedback: image ids judged right and wrong for the query; the query moves
        towards the first and away from the second (:func:`apply_feedback`). Every index
        answers the updated vector (the database's ``query_vector``).
    min_score : float or "auto", optional
        Drop results scoring below it; ``"auto"``: the model's weak-match score (for a text
        query; a query with images, feedback or a ``-word`` has no weak matches, and ``"auto"``
        drops none).

    Returns
    -------
    Search
        ``.results`` (each with ``why`` and ``weak``), ``.corrections``, ``.update``,
        ``.no_match``.
    """
    image_ids, like_ids, unlike_ids = map(image_ids_of, (image, like, unlike))
    both = set(like_ids) & set(unlike_ids)
    if both:
        raise ValueError(f"image {min(both)} is both liked and unliked: keep it in one of them")
    floor = resolve_min_score(db.model, min_score)
    rows = [db.row(image_id) for image_id in image_ids]
    feedback_rows = [[db.row(image_id) for image_id in ids] for ids in (like_ids, unlike_ids)]
    if not text.strip() and not image_ids and like_ids:  # feedback alone: the liked images lead
        query = Query(text, parts=np.zeros((0, db.embeddings.shape[1])))
    else:
        query = build_query(db.model, text, db.embeddings[rows], image_ids, correct=correct)
    # The weak-match score was calibrated on plain text queries; a query moved by images,
    # feedback or a -word scores on another scale, so its results are neither marked weak nor
    # dropped by "auto".
    calibrated = not (image_ids or like_ids or unlike_ids
                      or any(multiplier < 0 for _, _, multiplier in query.words))
    if not calibrated and isinstance(min_score, str):
        floor = None
    page = []  # what the query finds before feedback: where describe_update starts from
    if like_ids or unlike_ids:
        if len(query.parts):
            page = db.query_vector(query.vector, k)[0].tolist()
        apply_feedback(query, db.embeddings[feedback_rows[0]], like_ids,
                       db.embeddings[feedback_rows[1]], unlike_ids)
        if not np.linalg.norm(query.raw) > 1e-9:
            raise ValueError("the feedback cancels the query out: like or unlike fewer images")
    ids, scores = db.query_vector(query.vector, k)
    if dedup and len(ids):
        threshold = DEDUP_THRESHOLD if dedup is True else float(dedup)
        if not -1 < threshold <= 1:
            raise ValueError(f"dedup must be a cosine above -1 and at most 1 (e.g. "
                             f"{DEDUP_THRESHOLD}), got {dedup!r}")
        for n in (8 * len(ids), len(db)):  # enough candidates, almost always; else all of them
            ids, scores = db.query_vector(query.vector, min(n, len(db)))
            kept = dedup_rows(db.embeddings[[db.row(i) for i in ids]], range(len(ids)), k,
                              threshold)
            if len(kept) == k or n >= len(db):
                break
        ids, scores = ids[kept], scores[kept]
    best = float(scores[0]) if len(scores) else None
    dropped = 0
    if floor is not None:  # scores come best first: what falls below is a tail
        keep = np.asarray(scores) >= floor
        dropped = int((~keep).sum())
        ids, scores = ids[keep], scores[keep]
    weak = weak_score_of(db.model) if calibrated else None
    embeddings = db.embeddings[[db.row(image_id) for image_id in ids]].astype(np.float64)
    shares = embeddings @ query.parts.T / np.linalg.norm(query.raw)
    results = []
    for image_id, score, share in zip(ids, scores, shares):
        result = db.result(image_id, score)
        result["why"] = {key: float(value) for key, value in zip(query.keys, share)}
        result["weak"] = None if weak is None else bool(score < weak)
        results.append(result)
    update = describe_update(db, query, page) if (like_ids or unlike_ids) else ""
    return Search(results, query, weak, update, dropped, best)
