"""The embedded sample dataset: small drawn scenes with COCO-style captions, fully offline.

:func:`write_sample` draws ``n_images`` 96x96 scenes with Pillow -- one to three objects of one
kind and colour on a background, and in about two scenes of five a smaller object of another
kind and colour beside them -- and writes them in exactly the course's formats and file names,
so :mod:`capstone.data.dataset` reads the sample and the real COCO data the same way::

    out/captions_train2014.json    COCO layout; each image record also carries its ``scene``
    out/resnet18_features.pkl      dict image_id -> float32 (1, 512), see capstone.sample.features
    out/images/COCO_sample_<image_id:012d>.png
    out/.complete                  JSON marker {version, seed, n_images, ...}, written last

Every image has five captions in varied wording: templates with synonyms (a few of them rare,
such as "dinghy" or "meadow"), counts in words, word orders, an occasional extra phrase,
COCO-like capitalisation and trailing periods. Like a COCO caption, a caption names the main
objects and may or may not mention the other one. About 1% of the images are grayscale and, as
in COCO, have no entry in the features pickle.

Version 3 added the other object and the rare words: with only one kind and colour per scene,
every caption was a near-exact function of three concepts, and search on the sample flattered
the learned models against the closed-form reference (:mod:`capstone.further.ridge`) far more
than real COCO data does.

Some GloVe neighbours are kept out of every caption so that a search can show that a query word
no caption uses still finds the right scenes through the word vectors::

    UNUSED_SYNONYMS = {"boat": "ship", "house": "building", "tree": "pine", "car": "vehicle",
                       "ball": "football", "fish": "salmon", "flower": "roses", "kite": "balloon",
                       "grass": "turf", "sky": "clouds", "water": "ocean", "sand": "desert",
                       "snow": "winter", "night": "evening"}

The same seed and :data:`SAMPLE_VERSION` give the same bytes (json, pickle and PNGs; the json's
``coco_url`` names the output folder) on a given platform; change the version whenever the
drawing, the captions or :mod:`capstone.sample.features` change, so that cached samples regenerate.
"""

from __future__ import annotations

import pickle
import re
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from capstone import files
from capstone.sample.features import BATCH_SIZE, extract_features

SAMPLE_VERSION = 3
IMAGE_SIZE = 96
CAPTIONS_PER_IMAGE = 5
GRAYSCALE_SHARE = 0.01
OTHER_OBJECT_SHARE = 0.4  # scenes with a smaller object of another kind and colour
OTHER_OBJECT_SIZE = 0.7  # its size relative to the main objects'
RARE_SHARE = 0.06  # captions that use a rare synonym of the kind, and of the place
PICKLE_PROTOCOL = 4
MARKER = ".complete"

KINDS = ("boat", "house", "tree", "car", "ball", "fish", "flower", "kite")
COLORS = ("red", "blue", "green", "yellow", "white", "black", "orange", "purple")
BACKGROUNDS = ("grass", "sky", "water", "sand", "snow", "night")
UNUSED_SYNONYMS = {
    "boat": "ship",
    "house": "building",
    "tree": "pine",
    "car": "vehicle",
    "ball": "football",
    "fish": "salmon",
    "flower": "roses",
    "kite": "balloon",
    "grass": "turf",
    "sky": "clouds",
    "water": "ocean",
    "sand": "desert",
    "snow": "winter",
    "night": "evening",
}

COLOR_RGB = {
    "red": (215, 35, 35),
    "blue": (40, 60, 220),
    "green": (25, 175, 70),
    "yellow": (245, 215, 30),
    "white": (248, 248, 248),
    "black": (22, 22, 22),
    "orange": (250, 135, 20),
    "purple": (135, 45, 175),
}
BROWN, DARK, WINDOW = (115, 70, 35), (45, 40, 40), (170, 215, 240)

# -- drawing ----------------------------------------------------------------------------------
SCALE = 2  # scenes are drawn at twice the size and reduced, which smooths the edges
CANVAS = IMAGE_SIZE * SCALE


def _tone(rgb, rng, spread=8.0):
    """``rgb`` with a slight random tone jitter, as an int tuple."""
    return tuple(min(255, max(0, round(c + d))) for c, d in zip(rgb, rng.normal(0.0, spread, 3)))


def _vertical_gradient(top, bottom, height):
    """(height, CANVAS, 3) uint8 rows blending from ``top`` to ``bottom``."""
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    rows = (1 - t) * np.asarray(top, float) + t * np.asarray(bottom, float)
    return np.broadcast_to(np.rint(rows).astype(np.uint8), (height, CANVAS, 3))


def _background(name, rng):
    """Draw the background ``name``; return the image and the y of its horizon (0 when none)."""
    pixels = np.empty((CANVAS, CANVAS, 3), np.uint8)
    horizon = 0
    if name in ("grass", "snow"):
        horizon = int(rng.uniform(0.18, 0.32) * CANVAS)
        sky = ((150, 200, 240), (200, 225, 245)) if name == "grass" else ((190, 200, 215),) * 2
        ground = ((80, 150, 40), (60, 120, 30)) if name == "grass" else ((238, 242, 250),) * 2
        pixels[:horizon] = _vertical_gradient(_tone(sky[0], rng), _tone(sky[1], rng), horizon)
        pixels[horizon:] = _vertical_gradient(
            _tone(ground[0], rng, 5), _tone(ground[1], rng, 5), CANVAS - horizon
        )
    else:
        top, bottom = {
            "sky": ((90, 160, 230), (175, 215, 245)),
            "water": ((30, 110, 160), (20, 80, 135)),
            "sand": ((230, 205, 145), (215, 185, 120)),
            "night": ((8, 10, 35), (25, 30, 70)),
        }[name]
        pixels[:] = _vertical_gradient(_tone(top, rng), _tone(bottom, rng), CANVAS)
    image = Image.fromarray(pixels)
    draw = ImageDraw.Draw(image)
    _BACKGROUND_DETAILS[name](image, draw, rng, horizon)
    return image, horizon


def _grass_details(image, draw, rng, horizon):
    for _ in range(70):
        x, y = rng.uniform(0, CANVAS), rng.uniform(horizon + 4, CANVAS)
        shade = _tone((50, 110, 25) if rng.random() < 0.5 else (120, 185, 60), rng)
        draw.line([(x, y), (x + rng.uniform(-4, 4), y - rng.uniform(6, 14))], shade, 2)


def _sky_details(image, draw, rng, horizon):
    for _ in range(rng.integers(1, 4)):
        x, y, w = rng.uniform(0, CANVAS), rng.uniform(10, CANVAS - 20), rng.uniform(20, 40)
        white = _tone((250, 250, 252), rng, 3)
        for dx, dy, r in ((-0.5, 0.1, 0.35), (0.0, -0.1, 0.5), (0.5, 0.1, 0.35)):
            cx, cy, radius = x + dx * w, y + dy * w, r * w
            draw.ellipse([cx - radius, cy - radius * 0.7, cx + radius, cy + radius * 0.7], white)


def _water_details(image, draw, rng, horizon):
    for row in range(12):
        y = (row + rng.uniform(0.2, 0.8)) * CANVAS / 12
        for x in rng.uniform(-10, CANVAS, 5):
            light = _tone((110, 180, 215), rng, 10)
            draw.arc([x, y - 4, x + rng.uniform(14, 22), y + 4], 200, 340, light, 2)


def _sand_details(image, draw, rng, horizon):
    for _ in range(6):
        x, y = rng.uniform(-40, CANVAS), rng.uniform(0, CANVAS)
        draw.arc([x, y, x + rng.uniform(60, 110), y + 18], 190, 350, _tone((195, 160, 100), rng), 2)
    for x, y in rng.uniform(0, CANVAS, (60, 2)):
        draw.point([(x, y), (x + 1, y)], _tone((175, 140, 85), rng, 15))


def _snow_details(image, draw, rng, horizon):
    for _ in range(4):
        x, y, w = rng.uniform(-30, CANVAS), rng.uniform(horizon, CANVAS), rng.uniform(40, 90)
        draw.chord([x, y, x + w, y + w * 0.5], 180, 360, _tone((205, 215, 232), rng, 4))
    for x, y in rng.uniform(0, CANVAS, (45, 2)):
        draw.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], (255, 255, 255))


def _night_details(image, draw, rng, horizon):
    for x, y in rng.uniform(0, CANVAS, (35, 2)):
        radius = rng.uniform(0.6, 1.6)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], _tone((250, 245, 210), rng))
    x, y, r = rng.uniform(20, CANVAS - 20), rng.uniform(15, 60), rng.uniform(9, 14)
    sky = image.getpixel((int(x), int(y)))
    draw.ellipse([x - r, y - r, x + r, y + r], (245, 240, 200))
    dx = r * 0.55 * (1 if rng.random() < 0.5 else -1)  # a crescent: cover part with the sky
    draw.ellipse([x - r + dx, y - r - 2, x + r + dx, y + r - 2], sky)


_BACKGROUND_DETAILS = {
    "grass": _grass_details,
    "sky": _sky_details,
    "water": _water_details,
    "sand": _sand_details,
    "snow": _snow_details,
    "night": _night_details,
}


class _Pen:
    """Draws one object in its own units: (0, 0) is its centre, 1 its size, ``u`` mirrored."""

    def __init__(self, draw, x, y, size, flip, line):
        self.draw, self.x, self.y, self.size, self.flip = draw, x, y, size, flip
        self.edge = line

    def at(self, u, v):
        return (self.x + u * self.size * self.flip, self.y + v * self.size)

    def box(self, u0, v0, u1, v1):
        (x0, y0), (x1, y1) = self.at(u0, v0), self.at(u1, v1)
        return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]

    def polygon(self, points, fill, outline=2):
        corners = [self.at(*point) for point in points]
        self.draw.polygon(corners, fill, self.edge if outline else None, outline)

    def rectangle(self, u0, v0, u1, v1, fill, outline=2):
        self.draw.rectangle(self.box(u0, v0, u1, v1), fill, self.edge if outline else None, outline)

    def circle(self, u, v, radius, fill, outline=2, squash=1.0):
        box = self.box(u - radius, v - radius * squash, u + radius, v + radius * squash)
        self.draw.ellipse(box, fill, self.edge if outline else None, outline)

    def line(self, points, fill, width=2):
        self.draw.line([self.at(*p) for p in points], fill, width)


def _boat(pen, color, name, rng):
    pen.line([(0, 0.1), (0, -0.5)], BROWN, 3)
    sail = (200, 200, 190) if name == "white" else (245, 240, 225)
    pen.polygon([(0.03, -0.45), (0.03, 0.04), (0.42, 0.04)], sail)
    pen.polygon([(-0.03, -0.32), (-0.03, 0.04), (-0.28, 0.04)], sail)
    pen.polygon([(-0.5, 0.1), (0.5, 0.1), (0.32, 0.36), (-0.32, 0.36)], color)


def _house(pen, color, name, rng):
    pen.rectangle(-0.38, -0.08, 0.38, 0.45, color)
    pen.polygon([(-0.5, -0.06), (0.5, -0.06), (0, -0.48)],
                _tone((90, 50, 40) if name == "red" else (150, 45, 35), rng))
    pen.rectangle(0.03, 0.16, 0.21, 0.45, BROWN)  # door
    pen.rectangle(-0.28, 0.05, -0.12, 0.2, WINDOW)


def _tree(pen, color, name, rng):
    pen.rectangle(-0.08, 0.05, 0.08, 0.5, BROWN)
    for u, v, radius in ((-0.18, -0.05, 0.22), (0.18, -0.05, 0.22), (0.0, -0.24, 0.26)):
        pen.circle(u, v, radius, color)


def _car(pen, color, name, rng):
    pen.polygon([(-0.3, -0.02), (-0.18, -0.28), (0.2, -0.28), (0.34, -0.02)], color)
    pen.polygon([(-0.23, -0.04), (-0.15, -0.22), (-0.02, -0.22), (-0.02, -0.04)], WINDOW, 0)
    pen.polygon([(0.03, -0.04), (0.03, -0.22), (0.17, -0.22), (0.27, -0.04)], WINDOW, 0)
    pen.draw.rounded_rectangle(pen.box(-0.5, -0.04, 0.5, 0.22), 4, color, pen.edge, 2)
    for u in (-0.28, 0.28):
        pen.circle(u, 0.22, 0.13, (25, 25, 25), 0)
        pen.circle(u, 0.22, 0.065, (160, 160, 160), 0)


def _ball(pen, color, name, rng):
    pen.flip = 1  # the seams' arcs are drawn unmirrored
    pen.circle(0, 0, 0.36, color)
    seam = (60, 60, 60) if name == "white" else (250, 250, 250)
    pen.draw.arc(pen.box(-0.58, -0.36, -0.14, 0.36), -60, 60, seam, 3)
    pen.draw.arc(pen.box(0.14, -0.36, 0.58, 0.36), 120, 240, seam, 3)
    pen.circle(-0.14, -0.16, 0.055, (255, 255, 255), 0)  # shine


def _fish(pen, color, name, rng):
    pen.polygon([(0.18, 0), (0.5, -0.24), (0.5, 0.24)], color)  # tail
    pen.polygon([(-0.05, -0.16), (0.12, -0.32), (0.15, -0.1)], color)  # fin
    pen.circle(-0.08, 0, 0.34, color, squash=0.6)
    pen.circle(-0.25, -0.06, 0.07, (255, 255, 255), 1)
    pen.circle(-0.25, -0.06, 0.035, (0, 0, 0), 0)


def _flower(pen, color, name, rng):
    stem = (40, 130, 40)
    pen.line([(0, -0.1), (0, 0.5)], stem, 4)
    pen.circle(0.11, 0.24, 0.11, stem, 1, squash=0.55)  # leaf
    for angle in np.linspace(0, 2 * np.pi, 6, endpoint=False) + rng.uniform(0, np.pi / 3):
        pen.circle(0.2 * np.cos(angle), -0.14 + 0.2 * np.sin(angle), 0.13, color)
    pen.circle(0, -0.14, 0.1, (150, 80, 20) if name == "yellow" else (250, 200, 40), 1)


def _kite(pen, color, name, rng):
    tail = [(0, 0.3)] + [(0.07 * (-1) ** i, 0.3 + 0.06 * i) for i in range(1, 5)]
    pen.line(tail, DARK)
    for u, v in tail[2::2]:  # bows on the tail
        pen.polygon([(u - 0.06, v - 0.04), (u + 0.06, v + 0.04), (u + 0.06, v - 0.04),
                     (u - 0.06, v + 0.04)], color, 0)
    top, right, bottom, left = (0, -0.45), (0.3, -0.1), (0, 0.3), (-0.3, -0.1)
    pen.polygon([top, right, bottom, left], color)
    pen.line([top, bottom], DARK)
    pen.line([left, right], DARK)


_DRAW_KIND = {
    "boat": _boat,
    "house": _house,
    "tree": _tree,
    "car": _car,
    "ball": _ball,
    "fish": _fish,
    "flower": _flower,
    "kite": _kite,
}
# object size (in canvas pixels) by number of objects
_SIZES = {1: (80, 124), 2: (56, 84), 3: (44, 62)}
_OBJECT_KEYS = (("kind", KINDS), ("color", COLORS))


def render_scene(scene: dict, rng: np.random.Generator) -> Image.Image:
    """Draw one scene as a 96x96 RGB image.

    Parameters
    ----------
    scene : dict
        ``{"background": one of BACKGROUNDS, "objects": [{"kind": ..., "color": ...}, ...]}``
        with one to three objects, side by side in a random order; an object unlike the first
        is drawn smaller.
    rng : numpy.random.Generator
        Source of the layout (sizes, positions, facing) and the slight tone jitter.

    Returns
    -------
    PIL.Image.Image
        Mode ``"RGB"``, 96x96.
    """
    objects = scene["objects"]
    if not 1 <= len(objects) <= 3:
        raise ValueError(f"a scene holds 1 to 3 objects, got {len(objects)}")
    main = objects[0]["kind"], objects[0]["color"]
    values = [(scene["background"], BACKGROUNDS)]
    values += [(item[key], table) for item in objects for key, table in _OBJECT_KEYS]
    for value, known in values:
        if value not in known:
            raise ValueError(f"unknown scene value {value!r}: use one of {', '.join(known)}")
    image, horizon = _background(scene["background"], rng)
    draw = ImageDraw.Draw(image)
    line = (200, 200, 210) if scene["background"] == "night" else DARK
    slot = CANVAS / len(objects)
    for index, item in zip(rng.permutation(len(objects)), objects):
        size = rng.uniform(*_SIZES[len(objects)])
        size *= 1.0 if (item["kind"], item["color"]) == main else OTHER_OBJECT_SIZE
        x = slot * (index + 0.5) + rng.uniform(-0.12, 0.12) * max(slot - size, 0)
        low = max(size * 0.55, horizon + size * 0.1 if item["kind"] not in ("kite", "fish") else 0)
        y = rng.uniform(min(low, CANVAS - size * 0.6), CANVAS - size * 0.55)
        flip = 1 if rng.random() < 0.5 else -1
        pen = _Pen(draw, x, y, size, flip, line)
        _DRAW_KIND[item["kind"]](pen, _tone(COLOR_RGB[item["color"]], rng), item["color"], rng)
    return image.reduce(SCALE)


# -- scenes and captions ----------------------------------------------------------------------
def random_scene(rng: np.random.Generator) -> dict:
    """Draw a scene record: a background, one to three main objects of one kind and colour, and
    in :data:`OTHER_OBJECT_SHARE` of the scenes one more object of another kind and colour.

    Returns
    -------
    dict
        ``{"background": str, "objects": [{"kind": str, "color": str}, ...]}``: the main
        objects first, the other one (if any) last; three objects at most.
    """
    kind, color = KINDS[rng.integers(len(KINDS))], COLORS[rng.integers(len(COLORS))]
    background = BACKGROUNDS[rng.integers(len(BACKGROUNDS))]
    objects = [{"kind": kind, "color": color} for _ in range(rng.integers(1, 4))]
    if rng.random() < OTHER_OBJECT_SHARE:
        other_kind = KINDS[(KINDS.index(kind) + rng.integers(1, len(KINDS))) % len(KINDS)]
        other_color = COLORS[(COLORS.index(color) + rng.integers(1, len(COLORS))) % len(COLORS)]
        objects = objects[:2] + [{"kind": other_kind, "color": other_color}]
    return {"background": background, "objects": objects}


# (adjective, singular, plural); the first entry is the most common wording
_NOUNS = {
    "boat": [("", "boat", "boats"), ("", "sailboat", "sailboats"), ("", "sail boat", "sail boats")],
    "house": [("", "house", "houses"), ("", "home", "homes"), ("", "cottage", "cottages"),
              ("little", "house", "houses")],
    "tree": [("", "tree", "trees"), ("leafy", "tree", "trees")],
    "car": [("", "car", "cars"), ("small", "car", "cars")],
    "ball": [("", "ball", "balls"), ("round", "ball", "balls")],
    "fish": [("", "fish", "fish"), ("little", "fish", "fish")],
    "flower": [("", "flower", "flowers"), ("", "blossom", "blossoms")],
    "kite": [("", "kite", "kites")],
}
# (singular, plural) rare synonyms, used in RARE_SHARE of the captions
_RARE_NOUNS = {
    "boat": [("dinghy", "dinghies"), ("yacht", "yachts")],
    "house": [("cabin", "cabins"), ("bungalow", "bungalows")],
    "tree": [("oak", "oaks")],
    "car": [("sedan", "sedans"), ("automobile", "automobiles")],
    "ball": [("volleyball", "volleyballs")],
    "fish": [("minnow", "minnows")],
    "flower": [("daisy", "daisies"), ("tulip", "tulips")],
    "kite": [("kite", "kites")],
}
_RARE_PLACES = {
    "grass": ["in a meadow"],
    "sky": ["high overhead"],
    "water": ["on a pond", "in a lagoon"],
    "sand": ["on the dunes"],
    "snow": ["on a snowfield"],
    "night": ["at midnight"],
}
_VERBS = {
    "boat": ["floating", "sailing", "sitting"],
    "house": ["standing", "sitting", "built"],
    "tree": ["growing", "standing"],
    "car": ["parked", "driving", "sitting"],
    "ball": ["lying", "sitting", "bouncing"],
    "fish": ["swimming", "floating"],
    "flower": ["growing", "blooming"],
    "kite": ["flying", "floating", "soaring"],
}
_PLACES = {
    "grass": ["on the grass", "in a grassy field", "on a lawn", "in a field"],
    "sky": ["in the sky", "in the air", "up in the sky", "in a clear sky"],
    "water": ["on the water", "in the water", "on the sea", "on a lake"],
    "sand": ["on the sand", "on a beach", "on the sandy beach", "in the sand"],
    "snow": ["in the snow", "on the snow", "in the snowy hills", "on a snowy slope"],
    "night": ["at night", "in the dark", "under the stars", "at nighttime"],
}
_EXTRAS = {
    "grass": "on a sunny day",
    "sky": "on a sunny day",
    "water": "on a calm day",
    "sand": "on a hot day",
    "snow": "on a cold day",
    "night": "by moonlight",
}
_OTHER = ["next to {thing}", "beside {thing}", "with {thing} nearby", "and {thing}"]
_COUNTS = {1: ["a"] * 6 + ["one", "a single"], 2: ["two"] * 3 + ["a pair of"],
           3: ["three"] * 4 + ["a group of three", "several"]}
_VIEWS = ["a picture", "an image", "a photo", "a drawing", "a view", "a close up"]
_WITH_PLACE = [
    "{count} {thing} {verb} {place}",
    "{count} {thing} {place}",
    "{place} there {be} {count} {thing}",
    "{view} of {count} {thing} {place}",
    "there {be} {count} {thing} {place}",
    "{count} {noun} that {be} {color} {place}",
]
_WITHOUT_PLACE = ["{count} {thing} {verb}", "{view} of {count} {thing}", "{count} {thing}"]


def _pick(rng, options):
    """One of ``options``, the first one half of the time."""
    return options[0] if rng.random() < 0.5 else options[rng.integers(len(options))]


def _caption(scene, rng, grayscale):
    kind, color = scene["objects"][0]["kind"], scene["objects"][0]["color"]
    main = [item for item in scene["objects"] if item == scene["objects"][0]]
    n_objects = len(main)
    adjective, singular, plural = _pick(rng, _NOUNS[kind])
    if rng.random() < RARE_SHARE:
        adjective, (singular, plural) = "", _RARE_NOUNS[kind][rng.integers(len(_RARE_NOUNS[kind]))]
    places = _RARE_PLACES if rng.random() < RARE_SHARE else _PLACES
    noun = singular if n_objects == 1 else plural
    show_color = not grayscale and rng.random() < 0.85
    if rng.random() < 0.85:  # the last template with a place needs the colour
        template = _WITH_PLACE[rng.integers(len(_WITH_PLACE) - (not show_color))]
    else:
        template = _WITHOUT_PLACE[rng.integers(len(_WITHOUT_PLACE))]
    view = "a black and white photo" if grayscale and rng.random() < 0.5 else _pick(rng, _VIEWS)
    text = template.format(
        count=_COUNTS[n_objects][rng.integers(len(_COUNTS[n_objects]))],
        thing=" ".join(w for w in (adjective, color if show_color else "", noun) if w),
        noun=noun,
        color=color,
        verb=_VERBS[kind][rng.integers(len(_VERBS[kind]))],
        place=_pick(rng, places[scene["background"]]),
        be="is" if n_objects == 1 else "are",
        view=view,
    )
    if len(main) < len(scene["objects"]) and rng.random() < 0.5:  # the other object, sometimes
        other = scene["objects"][-1]
        thing = " ".join(w for w in (other["color"] * (not grayscale and rng.random() < 0.7),
                                     _NOUNS[other["kind"]][0][1]) if w)
        text += " " + _OTHER[rng.integers(len(_OTHER))].format(thing="a " + thing)
    if rng.random() < 0.15:
        text += " " + _EXTRAS[scene["background"]]
    text = re.sub(r"\ba (?=[aeiou])", "an ", text)
    if rng.random() < 0.6:
        text = text[0].upper() + text[1:]
    return text + "." if rng.random() < 0.4 else text


def caption_scene(scene: dict, rng: np.random.Generator, *, grayscale=False, n=CAPTIONS_PER_IMAGE):
    """Write ``n`` different captions of a scene in varied, COCO-like wording.

    Parameters
    ----------
    scene : dict
        A scene record (see :func:`random_scene`).
    rng : numpy.random.Generator
        Source of the wording.
    grayscale : bool
        Leave the colour out (the picture is black and white).
    n : int
        Number of captions.

    Returns
    -------
    list of str
        Each names the main objects' kind (or a synonym such as "sailboat"), usually their
        colour and the background, and about half of them the other object; never a word of
        :data:`UNUSED_SYNONYMS`.
    """
    captions = []
    for _ in range(20 * n):
        caption = _caption(scene, rng, grayscale)
        if caption.lower().rstrip(".") not in {c.lower().rstrip(".") for c in captions}:
            captions.append(caption)
        if len(captions) == n:
            break
    return captions


# -- the dataset on disk ----------------------------------------------------------------------
def _write_image(out, seed, index, image_id, grayscale):
    """Draw, caption and save image number ``index``; return its record, captions and pixels.

    The pixels are ``None`` for a grayscale image (it gets no features, as in COCO).
    """
    rng = np.random.default_rng([seed, index])
    scene = random_scene(rng)
    image = render_scene(scene, rng)
    captions = caption_scene(scene, rng, grayscale=grayscale)
    pixels = None if grayscale else np.asarray(image)
    path = out / "images" / f"COCO_sample_{image_id:012d}.png"
    saved = image.convert("L") if grayscale else image
    files.atomic_write(path, lambda tmp: saved.save(tmp, format="PNG"))
    captured = datetime(2013, 11, 14) + timedelta(seconds=int(rng.integers(0, 365 * 86400)))
    record = {
        "license": 1,
        "file_name": path.name,
        "coco_url": path.as_uri(),
        "height": IMAGE_SIZE,
        "width": IMAGE_SIZE,
        "date_captured": captured.strftime("%Y-%m-%d %H:%M:%S"),
        "flickr_url": path.as_uri(),
        "id": image_id,
        "scene": scene,
    }
    return record, captions, pixels


def _write_pickle(obj, path):
    """Write ``obj`` atomically as a pickle (the course's features-file layout)."""

    def write(tmp):
        with open(tmp, "wb") as file:
            pickle.dump(obj, file, protocol=PICKLE_PROTOCOL)

    files.atomic_write(path, write)


def read_marker(folder) -> dict:
    """The ``.complete`` marker of a sample folder (``{}`` when missing or unreadable)."""
    return files.read_json(Path(folder) / MARKER, {})


def write_sample(out, *, seed: int = 0, n_images: int = 3000) -> Path:
    """Generate the sample dataset into a folder, in the course's file formats.

    Parameters
    ----------
    out : path-like
        Destination folder (created). Writes ``captions_train2014.json``,
        ``resnet18_features.pkl``, ``images/*.png`` (removing other sample PNGs there) and,
        last, the ``.complete`` marker.
    seed : int
        The same seed (and :data:`SAMPLE_VERSION`) gives the same bytes.
    n_images : int
        Number of images, five captions each; about 1% are grayscale and have no features.

    Returns
    -------
    pathlib.Path
        ``out``, absolute.
    """
    if int(n_images) != n_images or n_images < 1:
        raise ValueError(f"n_images must be a positive whole number, got {n_images}")
    if int(seed) != seed or seed < 0:
        raise ValueError(f"seed must be a non-negative whole number, got {seed}")
    n_images, seed = int(n_images), int(seed)
    out = Path(out).expanduser().resolve()
    created = [folder for folder in (out, out / "images") if not folder.exists()]
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / MARKER).unlink(missing_ok=True)
    written = []
    try:
        _write_files(out, seed, n_images, written)
    except BaseException:  # a full disk, Ctrl-C: leave no partial sample behind
        for path in written:
            path.unlink(missing_ok=True)
        for folder in reversed(created):
            if not any(folder.iterdir()):
                folder.rmdir()
        raise
    return out


def _write_files(out: Path, seed: int, n_images: int, written: list) -> None:
    """Write the sample's files into ``out``, appending each path to ``written`` first."""
    rng = np.random.default_rng(seed)
    image_ids = rng.choice(max(600_000, 2 * n_images), n_images, replace=False).tolist()
    n_captions = CAPTIONS_PER_IMAGE * n_images
    caption_ids = rng.choice(max(1_000_000, 2 * n_captions), n_captions, replace=False)
    caption_ids = iter(caption_ids.tolist())
    n_grayscale = int(n_images * GRAYSCALE_SHARE + 0.5)
    grayscale = set(rng.choice(n_images, n_grayscale, replace=False).tolist())

    records, annotations, features = [], [], {}
    for start in range(0, n_images, BATCH_SIZE):
        batch = {}  # image_id -> pixels, for the features
        for index in range(start, min(start + BATCH_SIZE, n_images)):
            image_id = image_ids[index]
            written.append(out / "images" / f"COCO_sample_{image_id:012d}.png")
            record, captions, pixels = _write_image(
                out, seed, index, image_id, index in grayscale
            )
            records.append(record)
            annotations += [
                {"image_id": image_id, "id": next(caption_ids), "caption": caption}
                for caption in captions
            ]
            if pixels is not None:
                batch[image_id] = pixels
        if batch:
            vectors = extract_features(np.stack(list(batch.values())))
            features.update({image_id: vectors[[row]] for row, image_id in enumerate(batch)})

    keep = {record["file_name"] for record in records}
    for stale in (out / "images").glob("COCO_sample_*.png"):
        if stale.name not in keep:
            stale.unlink()
    written += [out / "resnet18_features.pkl", out / "captions_train2014.json", out / MARKER]
    _write_pickle(features, out / "resnet18_features.pkl")
    info = {
        "description": "capstone sample: drawn scenes with COCO-style captions",
        "version": str(SAMPLE_VERSION),
        "year": 2024,
        "contributor": "capstone",
        "date_created": "2024-01-01 00:00:00",
        "seed": seed,
    }
    licence = {
        "url": "https://creativecommons.org/publicdomain/zero/1.0/",
        "id": 1,
        "name": "CC0 1.0 (generated images)",
    }
    coco = {"info": info, "images": records, "licenses": [licence], "annotations": annotations}
    files.write_json(out / "captions_train2014.json", coco)
    marker = {
        "version": SAMPLE_VERSION,
        "seed": seed,
        "n_images": n_images,
        "images_with_features": len(features),
        "captions": len(annotations),
    }
    files.write_json(out / MARKER, marker)


def ensure_sample(folder) -> Path:
    """Return the sample's folder, generating it first when it is missing or outdated.

    Parameters
    ----------
    folder : path-like
        Where the sample lives (:func:`capstone.data.paths.sample_dir` for the dataset).

    Returns
    -------
    pathlib.Path
        A folder whose ``.complete`` marker has this :data:`SAMPLE_VERSION`.
    """
    folder = Path(folder).expanduser()
    if read_marker(folder).get("version") != SAMPLE_VERSION:
        files.say(f"generating the sample dataset in {folder} (once, about 15 s)")
        write_sample(folder)
    return folder
