"""A live search box: type words, see the matching images, ask for more like one of them.

Plain ipywidgets 8 (``Text``, ``IntSlider``, ``Image``, ``HTML``, ``Button``), so the same box
works in JupyterLab, Notebook 7 and Voila. In a kernel, typing is debounced with the kernel's
asyncio loop and the search runs in a worker thread; a search whose results arrive after a newer
one started is dropped (each search takes the next number of a counter, only the latest shows).
The new results are built off-screen and swapped in at once, so the grid never flickers.
"""

from __future__ import annotations

import asyncio
import html
import io

import ipywidgets as widgets
import numpy as np
from traitlets import validate

from capstone.ui.display import load_image
from capstone.search.query import COMMON_WORDS, NUMBER_WORDS, corrector_for, format_why
from capstone.course.text import STOP_WORDS

SYNTAX_HINT = ("-word leaves a word out, 2:word weighs it twice; after \"more like this\", "
               "type to steer it (\"at night\")")


def png_thumbnail(image, size: int = 160) -> bytes | None:
    """PNG bytes of ``image`` shrunk to fit ``size`` x ``size`` (``None`` for no image)."""
    if image is None:
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def example_words(model, n: int = 3, embeddings=None, candidates: int = 200) -> list[str]:
    """``n`` query ideas: frequent caption words that tell images apart.

    The candidates are the ``candidates`` most frequent caption words (lowest IDF) that are
    common GloVe words, not stop words and not numbers. With image ``embeddings`` (a
    database's), those whose cosine with the images varies most come first ("boat" splits the
    images, "picture" does not); without, the more frequent. A word that extends a chosen one
    ("boats" after "boat") or is a near synonym of it (GloVe cosine of 0.7 or more: "homes"
    after "houses") is skipped.
    """
    glove = model.text.glove
    order = np.argsort(np.asarray(model.text.idf), kind="stable")
    words = [word for word in map(str, np.asarray(model.text.vocab)[order])
             if word.isalpha() and word not in STOP_WORDS and word not in NUMBER_WORDS
             and glove.key_to_index[word] < COMMON_WORDS][:candidates]
    if embeddings is not None and len(words):
        embeddings = np.asarray(embeddings)[:: max(1, len(embeddings) // 2000)]  # a sample will do
        spread = (embeddings @ model.text.embed(words).T).std(axis=0)
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
        (score, caption and the words that matched most) and a "more like this" button, with
        CSS class ``capstone-result`` and an ``image_id``.
    """

    def __init__(self, db, k: int = 6, debounce: float = 0.25, thumbnail: int = 160):
        self.db, self.debounce, self.thumbnail = db, debounce, thumbnail
        self._request = 0  # number of the latest search; older ones are stale
        self._pending = self._task = None
        self.anchor = None
        self._examples = ", ".join(example_words(db.model, embeddings=db.embeddings))
        describe = getattr(db.model, "describe", None)  # which model answers, when, how well
        self._model_line = f"Using the {describe()}" if describe else ""
        corrector_for(db.model.text)  # built now, not by the first search's worker thread
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
        self.message = widgets.HTML()
        self.results = widgets.Box(layout=widgets.Layout(flex_flow="row wrap"))
        for widget, css_class in [
            (self.query, "capstone-query"),
            (self.message, "capstone-message"),
            (self.results, "capstone-results"),
        ]:
            widget.add_class(css_class)
        controls = widgets.HBox([self.query, self.clear, self.slider, self.diverse])
        super().__init__([controls, self.message, self.results])
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

    def more_like(self, image_id: int, k: int | None = None) -> list[dict]:
        """Show the images most like ``image_id`` (what its "more like this" button does).

        The box is emptied; what is typed next steers from the image ("at night").
        """
        self._pick(image_id)
        return self.search(k=k)

    # -- fetching (thread-safe: no widgets) ----------------------------------------------------
    def _options(self) -> tuple:
        return self.anchor, self.diverse.value

    def _fetch_query(self, text: str, k: int, anchor=None, diverse=False):
        """``(message, results, pngs)`` for a query; a message instead of results for none."""
        words = self._examples
        if not text.strip() and anchor is None:
            return (f"Type to search {len(self.db)} images, e.g. {words}. "
                    f"<small>{html.escape(SYNTAX_HINT)}</small><br>"
                    f"<small>{html.escape(self._model_line)}</small>", [], [])
        try:
            found = self.db.search(text, k, image=anchor, dedup=diverse)
        except ValueError as error:
            if "no known words" not in str(error):
                return html.escape(str(error)), [], []
            return f"No known words in {html.escape(repr(text))} — try words like {words}", [], []
        shown = found.query.corrected_text(lambda word: f"<b>{html.escape(word)}</b>")
        if anchor is not None:
            steer = f" + {shown}" if shown else " (type to steer them, e.g. “at night”)"
            message = f"Images most like #{anchor}{steer}"
        else:
            message = f"showing results for: {shown}" if found.corrections else ""
        return message, found.results, self._thumbnails(found.results)

    def _thumbnails(self, results: list[dict]) -> list:
        return [png_thumbnail(load_image(result["url"]), self.thumbnail) for result in results]

    # -- showing (widgets, on the kernel's thread) ---------------------------------------------
    def _next_request(self) -> int:
        self._request += 1
        return self._request

    def _show(self, request: int, message: str, results: list[dict], pngs: list) -> list[dict]:
        """Swap in the tiles and message of search number ``request``, unless a newer began."""
        if request != self._request:
            return results
        tiles = [self._tile(result, png) for result, png in zip(results, pngs)]
        self.message.value = message
        self.message.layout.display = None if message else "none"
        self.results.children = tiles
        return results

    def _tile(self, result: dict, png: bytes | None) -> widgets.VBox:
        """One result: the image (or a placeholder), score, caption and top words, "more like"."""
        image_id, width = result["image_id"], widgets.Layout(width=f"{self.thumbnail}px")
        caption = html.escape(result["captions"][0]) if result["captions"] else ""
        if png is None:
            picture = widgets.HTML(f"<i>image {image_id} not available</i>", layout=width)
        else:
            picture = widgets.Image(value=png, format="png", layout=width)
        why = html.escape(format_why(result.get("why", {})))
        label = widgets.HTML(f"<b>{result['score']:.3f}</b> {caption}"
                             + (f"<br><small>{why}</small>" if why else ""), layout=width)
        button = widgets.Button(description="more like this", layout=width)
        button.on_click(lambda _button: self._on_more_like(image_id))
        tile = widgets.VBox([picture, label, button])
        tile.add_class("capstone-result")
        tile.image_id, tile.why = image_id, why
        return tile

    def _pick(self, image_id) -> None:
        """Make ``image_id`` the anchor and empty the box, without a search of the empty box."""
        self.query.unobserve(self._on_change, "value")
        self.query.value = ""
        self.query.observe(self._on_change, "value")
        self._set_anchor(image_id, search=False)

    def _set_anchor(self, image_id, search: bool = True) -> None:
        self.anchor = image_id
        self.clear.layout.display = None if image_id is not None else "none"
        if search:
            self._on_change(None)

    # -- callbacks -----------------------------------------------------------------------------
    def _on_change(self, _change) -> None:
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
