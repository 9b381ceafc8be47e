"""A live search box: type words, see the matching images, ask for more like one of them.

Each result has a thumbs-up and a thumbs-down: they re-rank the results with Rocchio's update
of the query (``like=``/``unlike=`` of :func:`capstone.search.query.search`), and the box shows
the updated query as words ("boat + red - water"). With a calibrated model, weak matches are
marked, and a query that nothing matches well says so instead of showing unrelated pictures.

Plain ipywidgets 8 (``Text``, ``IntSlider``, ``Image``, ``HTML``, ``Button``), so the same box
works in JupyterLab, Notebook 7 and Voila. In a kernel, typing is debounced with the kernel's
asyncio loop and the search runs in a worker thread; a search whose results arrive after a newer
one started is dropped (each search takes the next number of a counter, only the latest shows).
The new results are built off-screen and swapped in at once, so the grid never flickers.
"""

from __future__ import annotations

import asyncio
import hashlib
import html
import io
import os
import urllib.parse
import urllib.request
from pathlib import Path

import ipywidgets as widgets
import numpy as np
from traitlets import validate

from capstone.data.glove import GLOVE_NAMES, common_words
from capstone.data.paths import cache_dir
from capstone.files import atomic_write
from capstone.ui.display import load_image
from capstone.search.query import COMMON_WORDS, NUMBER_WORDS, corrector_for, format_why
from capstone.course.text import STOP_WORDS

SYNTAX_HINT = ("-word leaves a word out, 2:word weighs it twice; after \"more like this\", "
               "type to steer it (\"at night\"); the thumbs under a result re-rank the others")


def png_thumbnail(image, size: int = 160) -> bytes | None:
    """PNG bytes of ``image`` shrunk to fit ``size`` x ``size`` (``None`` for no image)."""
    if image is None:
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def thumbnail_path(url: str, size: int) -> Path | None:
    """Where :func:`cached_thumbnail` keeps the thumbnail of ``url`` (``None``: not kept).

    A local file's size and modification time are part of the key, so an edited image gets a
    new thumbnail; a local file that is not there has none.
    """
    key = f"{size} {url}"
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        try:
            found = os.stat(urllib.request.url2pathname(urllib.parse.unquote(parsed.path)))
        except (OSError, ValueError):
            return None
        key += f" {found.st_size} {found.st_mtime_ns}"
    digest = hashlib.sha1(key.encode("utf-8", "surrogatepass")).hexdigest()
    return cache_dir() / "thumbnails" / digest[:2] / f"{digest}.png"


def cached_thumbnail(url: str | None, size: int = 160) -> bytes | None:
    """:func:`png_thumbnail` of the image at ``url``, made once and kept on disk.

    Every kernel of the search page (a class: 30) reads the same file instead of decoding and
    shrinking the image again; a cache that cannot be written only costs the time to make it.
    """
    path = thumbnail_path(url, size) if url else None
    if path is not None:
        try:
            return path.read_bytes()
        except OSError:
            pass
    png = png_thumbnail(load_image(url), size)
    if png is not None and path is not None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write(path, lambda tmp: Path(tmp).write_bytes(png))
        except OSError:  # read-only or full: shown anyway, made again next time
            pass
    return png


def example_words(model, n: int = 3, embeddings=None, candidates: int = 200) -> list[str]:
    """``n`` query ideas: frequent caption words that tell images apart.

    The candidates are the ``candidates`` most frequent caption words (lowest IDF) that are
    common GloVe words, not stop words and not numbers. With image ``embeddings`` (a
    database's), those whose cosine with the images varies most come first ("boat" splits the
    images, "picture" does not); without, the more frequent. A word that extends a chosen one
    ("boats" after "boat") or is a near synonym of it (GloVe cosine of 0.7 or more: "homes"
    after "houses") is skipped.
    """
    # the vocabulary's embedder and vectors: the full GloVe's 400,000 words would cost each
    # visitor's kernel of the app about 80 MB (the words' ranks come from GloVe's word list)
    text = model.text_for([]) if hasattr(model, "text_for") else model.text
    glove = text.glove
    if text.glove_name in GLOVE_NAMES:
        common = common_words(text.glove_name, COMMON_WORDS)
    else:  # word vectors given by hand: their own order
        common = set(glove.index_to_key[:COMMON_WORDS])
    order = np.argsort(np.asarray(text.idf), kind="stable")
    words = [word for word in map(str, np.asarray(text.vocab)[order])
             if word.isalpha() and word not in STOP_WORDS and word not in NUMBER_WORDS
             and word in common][:candidates]
    if embeddings is not None and len(words):
        embeddings = np.asarray(embeddings)[:: max(1, len(embeddings) // 2000)]  # a sample will do
        spread = (embeddings @ text.embed(words).T).std(axis=0)
        words = [words[i] for i in np.argsort(-spread, kind="stable")]
    chosen = []
    for word in words:
        if len(chosen) == n:
            break
        if not any(word.startswith(c) or c.startswith(word) or cosine(glove[word], glove[c]) >= 0.7
                   for c in chosen):
            chosen.append(word)
    return chosen


def cosine(a, b) -> float:
    """The cosine of two vectors."""
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b) or 1.0))


class ResultsSlider(widgets.IntSlider):
    """An ``IntSlider`` whose ``min`` stays at least 1 and ``max`` at most ``limit``.

    The bounds hold whatever a front end sends: a client can set ``max`` and ``value`` through
    the widget's comm, and each result is an image sent to the page.
    """

    def __init__(self, limit: int, **kwargs):
        self.limit = max(1, int(limit))
        super().__init__(**kwargs)

    @validate("min")
    def _validate_min(self, proposal):
        proposal["value"] = max(1, proposal["value"])
        return super()._validate_min(proposal)

    @validate("max")
    def _validate_max(self, proposal):
        proposal["value"] = min(proposal["value"], self.limit)
        return super()._validate_max(proposal)


def _running_loop():
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


class SearchBox(widgets.VBox):
    """The search box's widgets and callbacks; see :func:`search_box`.

    Attributes
    ----------
    query : ipywidgets.Text
        Where the user types (CSS class ``capstone-query``).
    slider : ResultsSlider
        How many results to show: 1 to ``max(k, 24)``, never more than the database holds.
    diverse : ipywidgets.Checkbox
        Leave out near-duplicate results (``dedup`` of
        :meth:`capstone.search.database.SearchDatabase.search`).
    message : ipywidgets.HTML
        A hint, what was searched for ("showing results for: a red **boat**"), or why there are
        no results (CSS class ``capstone-message``).
    anchor : int or None
        The image that "more like this" picked: typed text then steers from it.
    clear : ipywidgets.Button
        Forgets :attr:`anchor` (shown only while there is one).
    results : ipywidgets.Box
        The result tiles (CSS class ``capstone-results``): each a ``VBox`` of the image, a label
        (score, caption, the words that matched most, "weak match"), a "more like this" button
        and a row of 👍 and 👎 (CSS classes ``capstone-like``, ``capstone-unlike``); CSS class
        ``capstone-result`` (and ``capstone-weak`` for a weak match) and an ``image_id``.
    like, unlike : list of int
        Relevance feedback on the current query (forgotten when the text changes).
    forget : ipywidgets.Button
        Forgets the feedback (shown only while there is some).
    show_weak : ipywidgets.Button
        Shows the nearest images anyway when nothing matches well (shown only then).
    """

    def __init__(self, db, k: int = 6, debounce: float = 0.25, thumbnail: int = 160):
        self.db, self.debounce, self.thumbnail = db, debounce, thumbnail
        self._request = 0  # number of the latest search; older ones are stale
        # two sets of result tiles: one shown, the other filled by the next search (see _show)
        self._tile_sets, self._shown_set = ([], []), False
        self._tile_layout = widgets.Layout(width=f"{thumbnail}px")  # shared by every tile
        self._thumb_layout = widgets.Layout(width=f"{thumbnail // 2 - 2}px")
        # one layout and style model for all tiles' boxes, buttons and labels: a new tile opens
        # 7 widgets on the page, not 16
        self._box_layout = widgets.Layout()
        self._button_style = widgets.ButtonStyle()
        self._label_style = widgets.widget_string.HTMLStyle()
        self._pending = self._task = None
        self.anchor = None
        self.like, self.unlike, self._weak_wanted = [], [], False
        self._examples = ", ".join(example_words(db.model, embeddings=db.embeddings))
        describe = getattr(db.model, "describe", None)  # which model answers, when, how well
        self._model_line = f"Using the {describe()}" if describe else ""
        # built now, not by the first search's worker thread: the vocabulary's (a query of known
        # words needs no more; an unknown word reads the full GloVe then, in that kernel only)
        corrector_for(db.model.text_for([]) if hasattr(db.model, "text_for") else db.model.text)
        self.query = widgets.Text(
            placeholder="a dog catching a frisbee",
            continuous_update=True,
            layout=widgets.Layout(width="28em"),
        )
        limit = min(max(k, 24), len(db))
        self.slider = ResultsSlider(
            limit, value=min(k, limit), min=1, max=limit, description="results"
        )
        self.diverse = widgets.Checkbox(value=False, description="diverse", indent=False,
                                        layout=widgets.Layout(width="6em"))
        self.clear = widgets.Button(description="× image", tooltip="forget the picked image",
                                    layout=widgets.Layout(width="6em", display="none"))
        self.clear.on_click(lambda _button: self._set_anchor(None))
        self.forget = widgets.Button(description="× feedback", tooltip="forget the thumbs",
                                     layout=widgets.Layout(width="7em", display="none"))
        self.forget.on_click(lambda _button: self.give_feedback())
        self.show_weak = widgets.Button(description="show the nearest anyway",
                                        layout=widgets.Layout(width="14em", display="none"))
        self.show_weak.on_click(lambda _button: self._want_weak())
        self.message = widgets.HTML()
        self.results = widgets.Box(layout=widgets.Layout(flex_flow="row wrap"))
        for widget, css_class in [
            (self.query, "capstone-query"),
            (self.message, "capstone-message"),
            (self.results, "capstone-results"),
        ]:
            widget.add_class(css_class)
        controls = widgets.HBox([self.query, self.clear, self.slider, self.diverse])
        status = widgets.HBox([self.message, self.forget, self.show_weak])
        super().__init__([controls, status, self.results])
        for widget in (self.query, self.slider, self.diverse):
            widget.observe(self._on_change, "value")
        self._show(self._next_request(), *self._fetch_query("", k))

    # -- what typing and clicking do, callable from Python -------------------------------------
    def search(self, text: str | None = None, k: int | None = None) -> list[dict]:
        """Search now (what typing does after the debounce) and show the results.

        Parameters
        ----------
        text : str, optional
            Default: the text in the box.
        k : int, optional
            Default: the slider's value.
        """
        text = self.query.value if text is None else text
        return self._show(self._next_request(), *self._fetch_query(text, k or self.slider.value,
                                                                   *self._options()))

    def give_feedback(self, like=(), unlike=()) -> list[dict]:
        """Set the 👍 (``like``) and 👎 (``unlike``) images and re-rank (none: forget them)."""
        self.like, self.unlike = [int(i) for i in like], [int(i) for i in unlike]
        return self.search()

    def toggle(self, image_id: int, liked: bool) -> list[dict]:
        """What a tile's 👍 (``liked``) or 👎 does: mark the image so, or unmark it; re-rank."""
        self._mark(image_id, liked)
        return self.search()

    def _mark(self, image_id: int, liked: bool) -> None:
        mine, other = (self.like, self.unlike) if liked else (self.unlike, self.like)
        if image_id in mine:
            mine.remove(image_id)
        else:
            mine.append(image_id)
            if image_id in other:
                other.remove(image_id)

    def more_like(self, image_id: int, k: int | None = None) -> list[dict]:
        """Show the images most like ``image_id`` (what its "more like this" button does).

        The box is emptied; what is typed next steers from the image ("at night").
        """
        self._pick(image_id)
        return self.search(k=k)

    # -- fetching (thread-safe: no widgets) ----------------------------------------------------
    def _options(self) -> tuple:
        return (self.anchor, self.diverse.value, tuple(self.like), tuple(self.unlike),
                self._weak_wanted)

    def _fetch_query(self, text: str, k: int, anchor=None, diverse=False, like=(), unlike=(),
                     weak_wanted=False):
        """``(message, results, pngs, no_match)`` for a query; a message instead of results
        when there are none, or when nothing matches well (``no_match``)."""
        words = self._examples
        if not text.strip() and anchor is None and not like:
            return (f"Type to search {len(self.db)} images, e.g. {words}. "
                    f"<small>{html.escape(SYNTAX_HINT)}</small><br>"
                    f"<small>{html.escape(self._model_line)}</small>", [], [], False)
        try:
            found = self.db.search(text, k, image=anchor, dedup=diverse, like=list(like),
                                   unlike=list(unlike))
        except ValueError as error:
            if "no known words" not in str(error):
                return html.escape(str(error)), [], [], False
            return (f"No known words in {html.escape(repr(text))} — try words like {words}", [],
                    [], False)
        shown = found.query.corrected_text(lambda word: f"<b>{html.escape(word)}</b>")
        if like or unlike:
            message = f"refined by your feedback: {html.escape(found.update)}"
        elif anchor is not None:
            steer = f" + {shown}" if shown else " (type to steer them, e.g. “at night”)"
            message = f"Images most like #{anchor}{steer}"
        else:
            message = f"showing results for: {shown}" if found.corrections else ""
        if found.no_match and not weak_wanted:
            best = found.best_score if found.best_score is not None else float("nan")
            return (f"No good match for {html.escape(repr(text))}: no image scores above the "
                    f"weak-match score {found.weak_score:.3f} (the best: {best:.3f}). Try other "
                    f"words, e.g. {words}", [], [], True)
        return message, found.results, self._thumbnails(found.results), False

    def _thumbnails(self, results: list[dict]) -> list:
        return [cached_thumbnail(result["url"], self.thumbnail) for result in results]

    # -- showing (widgets, on the kernel's thread) ---------------------------------------------
    def _next_request(self) -> int:
        self._request += 1
        return self._request

    def _show(self, request: int, message: str, results: list[dict], pngs: list,
              no_match: bool = False) -> list[dict]:
        """Swap in the tiles and message of search number ``request``, unless a newer began.

        The tiles are filled off-screen, in the set of tiles not shown, then swapped in at once;
        so each search changes the values of a few widgets instead of making dozens of new ones
        (each a message to the page, and kept by the kernel until it ends).
        """
        if request != self._request:
            return results
        spare = self._tile_sets[not self._shown_set]
        while len(spare) < len(results):
            spare.append(self._new_tile())
        for tile, result, png in zip(spare, results, pngs):
            self._fill(tile, result, png)
        self.message.value = message
        self.message.layout.display = None if message else "none"
        self.forget.layout.display = None if self.like or self.unlike else "none"
        self.show_weak.layout.display = None if no_match else "none"
        self.results.children = spare[: len(results)]
        self._shown_set = not self._shown_set
        return results

    def _new_tile(self) -> widgets.VBox:
        """An empty result tile: picture, label, "more like this", and a row of 👍 and 👎."""
        picture = widgets.Image(format="png", layout=self._tile_layout)
        label = widgets.HTML(layout=self._tile_layout, style=self._label_style)
        button = widgets.Button(description="more like this", layout=self._tile_layout,
                                style=self._button_style)
        tile = widgets.VBox([picture, label, button], layout=self._box_layout)
        button.on_click(lambda _button: self._on_more_like(tile.image_id))
        thumbs = []  # 👍 then 👎 (ipywidgets ships the Font Awesome icons); coloured if chosen
        for liked, icon, tip in [(True, "thumbs-up", "right: re-rank towards it"),
                                 (False, "thumbs-down", "wrong: re-rank away from it")]:
            thumb = widgets.Button(icon=icon, tooltip=tip, layout=self._thumb_layout,
                                   style=self._button_style)
            thumb.add_class("capstone-like" if liked else "capstone-unlike")
            thumb.on_click(lambda _button, liked=liked: self._on_thumb(tile.image_id, liked))
            thumbs.append(thumb)
        tile.children = [picture, label, button, widgets.HBox(thumbs, layout=self._box_layout)]
        tile.add_class("capstone-result")
        tile.picture, tile.placeholder, tile.image_id = picture, None, None
        return tile

    def _fill(self, tile: widgets.VBox, result: dict, png: bytes | None) -> None:
        """Show ``result`` in ``tile``: the image (or a placeholder), score, caption and top words,
        the thumbs coloured if chosen; ``tile.image_id``, ``tile.why`` and ``tile.weak`` say it."""
        image_id = result["image_id"]
        if png is None:
            if tile.placeholder is None:
                tile.placeholder = widgets.HTML(layout=self._tile_layout)
            tile.placeholder.value = f"<i>image {image_id} not available</i>"
            picture = tile.placeholder
        else:
            tile.picture.value = png
            picture = tile.picture
        if tile.children[0] is not picture:
            tile.children = [picture, *tile.children[1:]]
        caption = html.escape(result["captions"][0]) if result["captions"] else ""
        why = html.escape(format_why(result.get("why", {})))
        weak = " <i>weak match</i>" if result.get("weak") else ""
        tile.children[1].value = (f"<b>{result['score']:.3f}</b>{weak} {caption}"
                                  + (f"<br><small>{why}</small>" if why else ""))
        like, unlike = tile.children[3].children
        like.button_style = "success" if image_id in self.like else ""
        unlike.button_style = "danger" if image_id in self.unlike else ""
        if result.get("weak"):
            tile.add_class("capstone-weak")
        else:
            tile.remove_class("capstone-weak")
        tile.image_id, tile.why, tile.weak = image_id, why, bool(result.get("weak"))

    def _pick(self, image_id) -> None:
        """Make ``image_id`` the anchor and empty the box, without a search of the empty box."""
        self.query.unobserve(self._on_change, "value")
        self.query.value = ""
        self.query.observe(self._on_change, "value")
        self.like, self.unlike, self._weak_wanted = [], [], False  # feedback on another query
        self._set_anchor(image_id, search=False)

    def _set_anchor(self, image_id, search: bool = True) -> None:
        self.anchor = image_id
        self.clear.layout.display = None if image_id is not None else "none"
        if search:
            self._on_change(None)

    def _want_weak(self) -> None:
        self._weak_wanted = True
        self._on_change(None)

    # -- callbacks -----------------------------------------------------------------------------
    def _on_change(self, change) -> None:
        if change is not None and change.get("owner") is self.query:  # a new query
            self.like, self.unlike, self._weak_wanted = [], [], False
        if self._pending is not None:
            self._pending.cancel()
        loop = _running_loop()
        if loop is None or not self.debounce:
            self.search()
            return
        self._pending = loop.call_later(
            self.debounce, self._in_background, self._fetch_query, self.query.value,
            self.slider.value, *self._options(),
        )

    def _on_thumb(self, image_id: int, liked: bool) -> None:
        if _running_loop() is None or not self.debounce:
            self.toggle(image_id, liked)
            return
        self._mark(image_id, liked)
        self._in_background(self._fetch_query, self.query.value, self.slider.value,
                            *self._options())

    def _on_more_like(self, image_id: int) -> None:
        if _running_loop() is None or not self.debounce:
            self.more_like(image_id)
        else:
            self._pick(image_id)
            self._in_background(self._fetch_query, "", self.slider.value, *self._options())

    def _in_background(self, fetch, *args) -> None:
        """Run ``fetch(*args)`` in a worker thread, then show it unless a newer search began."""
        self._pending, request = None, self._next_request()

        async def run():
            try:
                found = await asyncio.get_running_loop().run_in_executor(None, fetch, *args)
            except Exception as error:  # shown in the box: a callback has no one to raise to
                found = (f"Search failed: {html.escape(str(error))}", [], [])
            self._show(request, *found)

        self._task = asyncio.ensure_future(run())


def search_box(db, k: int = 6, *, debounce: float = 0.25, thumbnail: int = 160) -> SearchBox:
    """A live search box over an image database: results update as you type.

    Parameters
    ----------
    db : capstone.search.database.SearchDatabase
    k : int
        Results shown at first (a slider changes it).
    debounce : float
        Seconds of quiet typing before a search runs; ``0`` searches on every change, in the
        calling thread (what tests use).
    thumbnail : int
        Size in pixels of the result images.

    Returns
    -------
    SearchBox
        An ``ipywidgets.VBox``: display it (last line of a cell), or drive it from Python with
        ``box.query.value = "red boat"`` and ``box.search()``.
    """
    return SearchBox(db, k, debounce=debounce, thumbnail=thumbnail)
