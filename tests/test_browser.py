"""A real Chromium against a local JupyterLab: the search page, and live training curves.

One JupyterLab server (with Voila's server extension) serves a temporary copy of
``notebooks/``, with the hermetic test cache and the sample dataset in its kernels' environment.
Screenshots go to ``build/screenshots/``.
"""

import os
import shutil
from pathlib import Path

import pytest

from browser_helpers import launch_chromium, start_jupyter

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
PAGE_TIMEOUT_MS = 150_000  # a first run generates the sample and trains the app's model

# The <img> of each result tile, drawn on a canvas: the pictures' pixels, whatever their urls.
RESULT_PIXELS = """() => {
    const images = [...document.querySelectorAll('.capstone-results .capstone-result img')];
    if (!images.length || !images.every(image => image.complete && image.naturalWidth)) return null;
    return images.map(image => {
        const canvas = document.createElement('canvas');
        [canvas.width, canvas.height] = [image.naturalWidth, image.naturalHeight];
        canvas.getContext('2d').drawImage(image, 0, 0);
        return canvas.toDataURL();
    });
}"""
# JupyterLab's open notebook with its kernel connected and answering (a Run All issued
# earlier can stop after the first cell).
KERNEL_READY = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await panel.sessionContext.session.kernel.info;
}"""
# The live training figure: the output <img> of the cell that calls train(, and whether that
# cell still runs (JupyterLab shows its prompt as [*]).
TRAINING_FIGURE = """() => {
    const cells = [...document.querySelectorAll('.jp-CodeCell')];
    const cell = cells.find(c => /= train\\(/.test(c.querySelector('.jp-InputArea').textContent));
    const image = cell && cell.querySelector('.jp-OutputArea-output img');
    if (!image) return null;
    const prompt = cell.querySelector('.jp-InputArea-prompt').textContent;
    return {src: image.src, running: prompt.includes('*')};
}"""
# Every version of that figure the page shows, recorded as the DOM changes (so no redraw is
# missed between two polls): window.figures, oldest first.
RECORD_FIGURES = f"""() => {{
    window.figures = [];
    new MutationObserver(() => {{
        const now = ({TRAINING_FIGURE})();
        if (now && now.src !== window.figures.at(-1)?.src) window.figures.push(now);
    }}).observe(document.body, {{subtree: true, childList: true, attributes: true}});
}}"""


@pytest.fixture(scope="module")
def database():
    """The database the search page serves; a quick model is trained here when none is saved."""
    from capstone.data import load_dataset
    from capstone.database import ImageDatabase
    from capstone.model import load_model
    from capstone.train import train

    dataset = load_dataset()  # generates the sample here, not in two kernels at once
    try:
        model = load_model(dataset=dataset.name)
    except FileNotFoundError:
        model, _ = train(dataset, epochs=2, plot=False, progress=False)
    return ImageDatabase.load_or_build(model, dataset)


@pytest.fixture(scope="module")
def server(tmp_path_factory, database):
    root = tmp_path_factory.mktemp("notebooks")
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):  # a copy: the browser may save
        shutil.copy(notebook, root)
    env = {name: os.environ[name] for name in ("CAPSTONE_CACHE", "CAPSTONE_DATASET")}
    server = start_jupyter(root, tmp_path_factory.mktemp("jupyter-home"), env)
    yield server
    left = server.stop()
    assert not left, f"processes left behind: {left}"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch_chromium(playwright)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    yield page
    page.close()


def screenshot(page, name, element=None, down_to=None):
    """Save a screenshot of the page (down to the bottom of ``down_to``) or of ``element``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = str(SCREENSHOTS / name)
    if element is not None:
        element.screenshot(path=path)
        return
    clip = None
    if down_to is not None:
        box = down_to.bounding_box()
        clip = {"x": 0, "y": 0, "width": page.viewport_size["width"]}
        clip["height"] = box["y"] + box["height"] + 16
    page.screenshot(path=path, clip=clip)


def wait_for_new_results(page, previous=None):
    """Pixels of the result pictures once they are shown and differ from ``previous``."""
    handle = page.wait_for_function(
        f"previous => {{ const now = ({RESULT_PIXELS})();"
        " return now && JSON.stringify(now) !== JSON.stringify(previous) && now; }",
        arg=previous,
        timeout=30_000,
    )
    return handle.json_value()


def expected_labels(database, text, k):
    """What the tiles of a search should say: each result's score and first caption."""
    return [f"{result['score']:.3f} {result['captions'][0]}" for result in database.query(text, k)]


def test_search_page_shows_results_that_follow_the_query(server, database, page):
    page.goto(server.url("voila/render/app.ipynb"), timeout=PAGE_TIMEOUT_MS)
    query = page.wait_for_selector(".capstone-query input", timeout=PAGE_TIMEOUT_MS)
    query.fill("a red boat on the water")
    boats = wait_for_new_results(page)
    labels = page.locator(".capstone-result").all_inner_texts()
    expected = expected_labels(database, "a red boat on the water", len(labels))
    assert len(boats) == len(labels) >= 3
    assert all(want in label for want, label in zip(expected, labels, strict=True)), labels
    screenshot(page, "search.png", down_to=page.locator(".capstone-results"))

    query.fill("a yellow flower in the snow")
    flowers = wait_for_new_results(page, previous=boats)
    labels = page.locator(".capstone-result").all_inner_texts()
    expected = expected_labels(database, "a yellow flower in the snow", len(labels))
    assert flowers != boats
    assert all(want in label for want, label in zip(expected, labels, strict=True)), labels

    query.fill("qwzx vbnm")
    message = page.locator(".capstone-message")
    message.wait_for(state="visible", timeout=30_000)
    assert "No known words" in message.inner_text()
    assert page.locator(".capstone-result").count() == 0


def test_training_curves_redraw_while_training_runs(server, page):
    page.goto(server.url("lab/tree/04_training.ipynb"), timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext", timeout=60_000
    )
    page.evaluate(KERNEL_READY)
    page.evaluate(RECORD_FIGURES)
    # not awaited: the command's promise only settles when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")
    page.wait_for_function(
        "() => window.figures.filter(figure => figure.running).length >= 2",
        timeout=PAGE_TIMEOUT_MS,
    )
    figures = page.evaluate("() => window.figures")
    first, second = [figure for figure in figures if figure["running"]][:2]
    assert first["src"].startswith("data:image/png") and first["src"] != second["src"]
    cell = page.locator(".jp-CodeCell").filter(has_text="model, history = train(")
    figure = cell.locator(".jp-OutputArea-output img")
    figure.scroll_into_view_if_needed()
    screenshot(page, "training.png", figure)
    screenshot(page, "training-lab.png")
