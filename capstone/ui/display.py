"""Showing images: fetch one by url (local, cached, or not at all), draw a grid of them.

A grid never fails half way: an image that cannot be fetched becomes a placeholder tile with
its id and first caption.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import stat
import textwrap
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from PIL import Image

from capstone.data.dataset import load_dataset
from capstone.data.paths import cache_dir
from capstone.files import atomic_write
from capstone.search.query import format_why

UNREACHABLE_SECONDS = 60.0  # a host that could not be reached is not retried for this long
#: The largest image file read or downloaded (COCO's are about 160 kB): a larger one is not shown.
MAX_IMAGE_BYTES = 32 * 2**20
_unreachable_until: dict[str, float] = {}


def image_cache_path(url: str) -> Path:
    """Where :func:`load_image` caches the image at an http(s) ``url``."""
    suffix = Path(urllib.parse.urlparse(url).path).suffix.lower() or ".jpg"
    return cache_dir() / "images" / f"{hashlib.sha1(url.encode()).hexdigest()}{suffix}"


def load_image(url: str | None, *, timeout: float = 3.0, cache: bool = True):
    """Fetch the image at ``url``; ``None`` when it cannot be fetched (never an exception).

    Parameters
    ----------
    url : str or None
        A ``file://`` url (read locally) or an ``http(s)://`` one (downloaded once, then read
        from :func:`image_cache_path`).
    timeout : float
        Seconds to wait for a server. A host that does not answer is skipped for
        :data:`UNREACHABLE_SECONDS`, so a grid of images from an unreachable host costs one
        timeout, not one per image.
    cache : bool
        Keep downloads on disk and read them from there.

    Returns
    -------
    PIL.Image.Image or None
    """
    try:
        parsed = urllib.parse.urlparse(url or "")
        if parsed.scheme == "file":
            path = urllib.request.url2pathname(urllib.parse.unquote(parsed.path))
            return _opened(_read_file(path))
        if parsed.scheme not in ("http", "https"):
            return None
        cached = image_cache_path(url)
        if cache and cached.is_file():
            return _opened(_read_file(cached))
        if _unreachable_until.get(parsed.netloc, 0.0) > time.monotonic():
            return None
        data = _download(url, parsed.netloc, timeout)
        image = _opened(data)
        if image is not None and cache:
            with contextlib.suppress(OSError):  # a full disk: shown, just not kept
                atomic_write(cached, lambda tmp: tmp.write_bytes(data))
        return image
    except (OSError, ValueError):
        return None


def _read_file(path) -> bytes | None:
    """The bytes of a regular file of at most :data:`MAX_IMAGE_BYTES`, else ``None``.

    Opened without blocking and checked before reading: a FIFO, a device or a folder named by a
    ``file://`` url is not read (a FIFO would block forever), nor a file too large to be an image.
    """
    handle = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    with os.fdopen(handle, "rb") as file:
        info = os.fstat(file.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_size > MAX_IMAGE_BYTES:
            return None
        data = file.read(MAX_IMAGE_BYTES + 1)
    return data if len(data) <= MAX_IMAGE_BYTES else None


def _opened(data: bytes | None):
    """The decoded image in ``data``, or ``None``."""
    if data is None:
        return None
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _download(url: str, host: str, timeout: float) -> bytes | None:
    """The body at ``url`` (at most :data:`MAX_IMAGE_BYTES`), or ``None``; a host that cannot be
    reached is remembered."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            if int(response.headers.get("Content-Length") or 0) > MAX_IMAGE_BYTES:
                return None
            data = response.read(MAX_IMAGE_BYTES + 1)
            return data if len(data) <= MAX_IMAGE_BYTES else None
    except urllib.error.HTTPError:  # the server answered: only this image is missing
        return None
    except (OSError, ValueError):  # no connection, timeout, bad url
        _unreachable_until[host] = time.monotonic() + UNREACHABLE_SECONDS
        return None


def _tiles(images, dataset, scores):
    """``(image_id, url, captions, score, why)`` per image id or search-result dict."""
    images = list(images)
    if scores is None:
        scores = [image.get("score") if isinstance(image, dict) else None for image in images]
    if len(scores) != len(images):
        raise ValueError(f"{len(images)} images but {len(scores)} scores; give one per image")
    tiles = []
    for image, score in zip(images, scores):
        if isinstance(image, dict):
            tiles.append((int(image["image_id"]), image.get("url"), image.get("captions"), score,
                          image.get("why")))
            continue
        if dataset is None:
            dataset = load_dataset()
        image_id = int(image)
        captions = dataset.image_captions.get(image_id)
        tiles.append((image_id, dataset.urls.get(image_id), captions, score, None))
    return tiles


def tile_title(image_id: int, caption: str | None, score: float | None, width: int = 28,
               why: dict | None = None) -> str:
    """A tile's title: score and id, the words that matched most (a search result's ``why``),
    then the caption wrapped to ``width``."""
    head = f"#{image_id}" if score is None else f"{score:.3f}  #{image_id}"
    words = format_why(why or {}, 2)
    return head + (f"\n{words}" if words else "") + ("\n" + textwrap.fill(caption, width)
                                                      if caption else "")


def show_images(
    images, captions: bool = True, scores=None, dataset=None, ncols: int | None = None, fig=None
):
    """Draw images in a grid, each titled with its score, id, top words and first caption.

    Parameters
    ----------
    images : sequence of int or of dict
        Image ids, or search results (dicts with ``image_id``, ``url``, ``captions`` and
        ``score``, and ``why``: its top two words are shown, as
        :meth:`capstone.search.database.SearchDatabase.query` returns).
    captions : bool
        Show each image's first caption.
    scores : sequence of float, optional
        One per image, shown in the titles (default: the results' scores, if any).
    dataset : capstone.data.dataset.Dataset, optional
        Where image ids' urls and captions come from; loaded with
        :func:`capstone.data.dataset.load_dataset` when needed and not given.
    ncols : int, optional
        Columns of the grid (default: up to 5).
    fig : matplotlib.figure.Figure, optional
        Draw into this figure (cleared first) instead of a new one.

    Returns
    -------
    matplotlib.figure.Figure
        In a notebook, end the line with ``;`` so the figure is not shown twice.
    """
    import matplotlib.pyplot as plt

    tiles = _tiles(images, dataset, scores)
    ncols = max(1, min(ncols or 5, len(tiles) or 1))
    nrows = max(1, math.ceil(len(tiles) / ncols))
    if fig is None:
        fig = plt.figure(figsize=(2.8 * ncols, 3.6 * nrows))
    fig.clear()
    for index, (image_id, url, image_captions, score, why) in enumerate(tiles):
        ax = fig.add_subplot(nrows, ncols, index + 1)
        first = image_captions[0] if image_captions else ""
        missing = f"image {image_id}\nnot available\n\n" + textwrap.fill(first, 24)
        title = tile_title(image_id, first if captions else None, score, why=why)
        draw_tile(ax, url, title, missing)
    fig.tight_layout()
    return fig


def draw_tile(ax, url: str | None, title: str, missing: str = "not available") -> None:
    """Draw the image at ``url`` on ``ax`` under ``title``, or a grey tile saying ``missing``.

    Grayscale images are drawn gray, not through a colour map. Never raises for a bad ``url``.
    """
    ax.set_title(title, fontsize=8)
    image = load_image(url)
    if image is None:
        ax.set_facecolor("0.9")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.text(0.5, 0.5, missing, ha="center", va="center", fontsize=7, transform=ax.transAxes)
    else:
        ax.set_axis_off()
        ax.imshow(image.convert("RGB"))
