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

from .display import load_image
from .text import STOP_WORDS


def png_thumbnail(image, size: int = 160) -> bytes | None:
    """PNG bytes of ``image`` shrunk to fit ``size`` x ``size`` (``None`` for no image)."""
    if image is None:
        return None
    image = image.convert("RGB")
    image.thumbnail((size, size))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def example_words(model, n: int = 3) -> list[str]:
    """The ``n`` words most captions use (lowest IDF), stop words left out: query ideas."""
    vocab, idf = model.vocabulary()  # reads no word vectors
    order = np.argsort(np.asarray(idf), kind="stable")
    words = (str(word) for word in np.asarray(vocab)[order])
    return [word for word in words if word.isalpha() and word not in STOP_WORDS][:n]


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
    slider : ipywidgets.IntSlider
        How many results to show.
    message : ipywidgets.HTML
        A hint, or why there are no results (CSS class ``capstone-message``).
    results : ipywidgets.Box
        The result tiles (CSS class ``capstone-results``): each a ``VBox`` of the image, a label
        and a "more like this" button, with CSS class ``capstone-result`` and an ``image_id``.
    """

    def __init__(self, db, k: int = 6, debounce: float = 0.25, thumbnail: int = 160):
        self.db, self.debounce, self.thumbnail = db, debounce, thumbnail
        self._request = 0  # number of the latest search; older ones are stale
        self._pending = self._task = None
        self._examples = ", ".join(example_words(db.model))
        self.query = widgets.Text(
            placeholder="a dog catching a frisbee",
            continuous_update=True,
            layout=widgets.Layout(width="28em"),
        )
        self.slider = widgets.IntSlider(value=k, min=1, max=max(k, 24), description="results")
        self.message = widgets.HTML()
        self.results = widgets.Box(layout=widgets.Layout(flex_flow="row wrap"))
        for widget, css_class in [
            (self.query, "capstone-query"),
            (self.message, "capstone-message"),
            (self.results, "capstone-results"),
        ]:
            widget.add_class(css_class)
        super().__init__([widgets.HBox([self.query, self.slider]), self.message, self.results])
        self.query.observe(self._on_change, "value")
        self.slider.observe(self._on_change, "value")
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
        return self._show(self._next_request(), *self._fetch_query(text, k or self.slider.value))

    def more_like(self, image_id: int, k: int | None = None) -> list[dict]:
        """Show the images most like ``image_id`` (what its "more like this" button does)."""
        return self._show(self._next_request(), *self._fetch_similar(image_id, k))

    # -- fetching (thread-safe: no widgets) ----------------------------------------------------
    def _fetch_query(self, text: str, k: int):
        """``(message, results, pngs)`` for a query; a message instead of results for none."""
        words = self._examples
        if not text.strip():
            return f"Type to search {len(self.db)} images, e.g. {words}", [], []
        try:
            results = self.db.query(text, k)
        except ValueError:
            return f"No known words in {html.escape(repr(text))} — try words like {words}", [], []
        return "", results, self._thumbnails(results)

    def _fetch_similar(self, image_id: int, k: int | None):
        results = self.db.similar(image_id, k or self.slider.value)
        return f"Images most like #{image_id}:", results, self._thumbnails(results)

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
        """One result: the image (or a placeholder), score and caption, "more like this"."""
        image_id, width = result["image_id"], widgets.Layout(width=f"{self.thumbnail}px")
        caption = html.escape(result["captions"][0]) if result["captions"] else ""
        if png is None:
            picture = widgets.HTML(f"<i>image {image_id} not available</i>", layout=width)
        else:
            picture = widgets.Image(value=png, format="png", layout=width)
        label = widgets.HTML(f"<b>{result['score']:.3f}</b> {caption}", layout=width)
        button = widgets.Button(description="more like this", layout=width)
        button.on_click(lambda _button: self._on_more_like(image_id))
        tile = widgets.VBox([picture, label, button])
        tile.add_class("capstone-result")
        tile.image_id = image_id
        return tile

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
            self.slider.value,
        )

    def _on_more_like(self, image_id: int) -> None:
        if _running_loop() is None or not self.debounce:
            self.more_like(image_id)
        else:
            self._in_background(self._fetch_similar, image_id, self.slider.value)

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
    db : capstone.database.ImageDatabase
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
