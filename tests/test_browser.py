"""A real Chromium against a local Jupyter server: the search box and the live training curves.

One server (JupyterLab, with Notebook 7's and Voila's server extensions) serves a temporary copy
of ``notebooks/``, with the hermetic test cache and the sample dataset in its kernels'
environment. The search box is tested in Voila, JupyterLab and Notebook 7, the live training
curves in JupyterLab and Notebook 7. Each test ends by shutting its kernels down. The training
notebook runs in a kernel that saves its model to a temporary file, not to the cache the search
tests read, so no test depends on another's order or on a training run finishing.
Screenshots go to ``build/screenshots/``. The kernel-freeing tests start the search page as
``make app`` does (``python -m capstone.app``), each on its own port, with short culling times.
"""

import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from browser_helpers import launch_chromium, start_jupyter, write_kernelspec
from voila_probe import VoilaServer

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
SCREENSHOTS = ROOT / "build" / "screenshots"
PAGE_TIMEOUT_MS = 150_000  # a first run generates the sample and trains the app's model
# Where each front end opens a notebook (JupyterLab without the tabs an earlier test left open).
UIS = {"lab": "lab/tree/{}?reset", "notebook7": "notebooks/{}"}
TRAINING_KERNEL = "capstone-training"  # the default kernel, saving models to a temporary file

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
# The open notebook (JupyterLab or Notebook 7) with its kernel connected and answering (a Run
# All issued earlier can stop after the first cell).
KERNEL_READY = """async () => {
    const panel = window.jupyterapp.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await panel.sessionContext.session.kernel.info;
}"""
# The live training figure: the output <img> of the training loop's cell (the one that calls
# set_train_batch), and whether that cell still runs (both front ends show its prompt as [*]).
TRAINING_FIGURE = """() => {
    const cells = [...document.querySelectorAll('.jp-CodeCell')];
    const cell = cells.find(c => /set_train_batch\\(/.test(c.querySelector('.jp-InputArea').textContent));
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
    """The database the search box serves.

    When no model is saved, the default one is trained here (about 10 s), as ``make app`` does.
    """
    from capstone.data.dataset import load_dataset
    from capstone.search.database import SearchDatabase
    from capstone.data.model import load_model
    from capstone.pipeline.training import train

    dataset = load_dataset()  # generates the sample here, not in two kernels at once
    try:
        model = load_model(dataset=dataset.name)
    except FileNotFoundError:
        model, _ = train(dataset, plot=False, progress=False)
    return SearchDatabase.load_or_build(model, dataset)


@pytest.fixture(scope="module")
def training_model(tmp_path_factory):
    """Where the training notebook's kernel saves its model: notebook 4's own file."""
    from capstone.data.paths import notebook_model_path

    return notebook_model_path("sample")


@pytest.fixture(scope="module")
def server(tmp_path_factory, database, training_model):
    root = tmp_path_factory.mktemp("notebooks")
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):  # a copy: the browser may save
        shutil.copy(notebook, root)
    use_kernel(root / "04_training.ipynb", TRAINING_KERNEL)
    home = tmp_path_factory.mktemp("jupyter-home")
    write_kernelspec(home, TRAINING_KERNEL, {"CAPSTONE_MODEL": str(training_model)})
    env = {name: os.environ[name] for name in ("CAPSTONE_CACHE", "CAPSTONE_DATASET")}
    server = start_jupyter(root, home, env)
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
def page(browser, server):
    """A new tab; afterwards it closes and every kernel the test started shuts down."""
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    yield page
    page.close()
    server.shutdown_kernels()


def use_kernel(path, kernel_name):
    """Make the notebook file at ``path`` open with the kernel ``kernel_name``."""
    notebook = json.loads(path.read_text())
    notebook["metadata"]["kernelspec"]["name"] = kernel_name
    path.write_text(json.dumps(notebook))


def open_notebook(page, server, ui, name):
    """Open notebook ``name`` in ``ui`` (a key of ``UIS``); return once its kernel answers."""
    page.goto(server.url(UIS[ui].format(name)), timeout=PAGE_TIMEOUT_MS)
    page.wait_for_function(
        "() => window.jupyterapp?.shell.currentWidget?.sessionContext", timeout=60_000
    )
    page.evaluate(KERNEL_READY)


def run_all(page):
    """Start running every cell of the open notebook (without waiting for them to finish)."""
    # not awaited: the command's promise only settles when every cell has run
    page.evaluate("() => { window.jupyterapp.commands.execute('runmenu:run-all'); }")


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
    """What the tiles of a search should say: each result's score, "weak match" for a weak one,
    and its first caption."""
    return [f"{result['score']:.3f} {'weak match ' if result['weak'] else ''}"
            f"{result['captions'][0]}" for result in database.query(text, k)]


def search(page, database, text, previous=None):
    """Type ``text`` into the search box; check the tiles are the database's results for it.

    Returns the pixels of the result pictures (new ones: different from ``previous``).
    """
    page.locator(".capstone-query input").fill(text)
    pixels = wait_for_new_results(page, previous)
    labels = page.locator(".capstone-result").all_inner_texts()
    expected = expected_labels(database, text, len(labels))
    assert len(pixels) == len(labels) >= 3
    assert all(want in label for want, label in zip(expected, labels, strict=True)), labels
    return pixels


def wait_for_file(path, timeout=30):
    """Return once ``path`` exists; ``TimeoutError`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {timeout} s")
        time.sleep(0.1)


def test_search_page_shows_results_that_follow_the_query(server, database, page):
    page.goto(server.url("voila/render/app.ipynb"), timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(".capstone-query input", timeout=PAGE_TIMEOUT_MS)
    boats = search(page, database, "a red boat on the water")
    screenshot(page, "search.png", down_to=page.locator(".capstone-results"))
    flowers = search(page, database, "a yellow flower in the snow", previous=boats)
    assert flowers != boats

    search(page, database, "a red baot -water", previous=flowers)  # a typo, and a minus term
    message = page.locator(".capstone-message").inner_text()
    assert "showing results for" in message and "boat" in message and "baot" not in message
    labels = page.locator(".capstone-result").all_inner_texts()
    assert all("boat " in label for label in labels), labels  # each tile's top words and shares
    screenshot(page, "search-corrected.png", down_to=page.locator(".capstone-results"))

    page.locator(".capstone-query input").fill("qwzx vbnm")
    message = page.locator(".capstone-message").filter(has_text="No known words")
    message.wait_for(state="visible", timeout=30_000)  # the previous search's line is replaced
    assert page.locator(".capstone-result").count() == 0


def test_thumbs_re_rank_the_search_page_and_show_the_update(server, database, page):
    page.goto(server.url("voila/render/app.ipynb"), timeout=PAGE_TIMEOUT_MS)
    page.wait_for_selector(".capstone-query input", timeout=PAGE_TIMEOUT_MS)
    pixels = search(page, database, "house")
    k = page.locator(".capstone-result").count()
    shown = [result["image_id"] for result in database.query("house", k)]
    steps = [([shown[3]], []), ([shown[3]], [shown[0]])]
    page.locator(".capstone-result").nth(3).locator(".capstone-like").click()  # 👍
    for step, (like, unlike) in enumerate(steps):
        if step:  # 👎 on the first result, wherever the 👍 moved it
            where = [r["image_id"] for r in database.query("house", k, like=steps[0][0])]
            page.locator(".capstone-result").nth(where.index(shown[0])).locator(
                ".capstone-unlike").click()
        found = database.search("house", k, like=like, unlike=unlike)
        page.locator(".capstone-message").filter(has_text=found.update).wait_for(timeout=30_000)
        pixels = wait_for_new_results(page, pixels)
        labels = page.locator(".capstone-result").all_inner_texts()
        expected = [f"{r['score']:.3f} {r['captions'][0]}" for r in found.results]
        assert all(want in label for want, label in zip(expected, labels, strict=True)), labels
    assert found.update.startswith("house + ") and " - " in found.update
    screenshot(page, "search-feedback.png", down_to=page.locator(".capstone-results"))


@pytest.mark.parametrize("ui", UIS)
def test_search_box_in_a_notebook_follows_the_query(server, database, page, ui):
    open_notebook(page, server, ui, "app.ipynb")
    run_all(page)
    page.wait_for_selector(".capstone-query input", timeout=PAGE_TIMEOUT_MS)
    boats = search(page, database, "a red boat on the water")
    page.locator(".capstone-results").scroll_into_view_if_needed()
    screenshot(page, f"search-{ui}.png")
    assert search(page, database, "a yellow flower in the snow", previous=boats) != boats


@pytest.mark.parametrize("ui", UIS)
def test_training_curves_redraw_while_training_runs(server, page, training_model, ui):
    from capstone.data.model import load_model

    training_model.unlink(missing_ok=True)
    open_notebook(page, server, ui, "04_training.ipynb")
    page.evaluate(RECORD_FIGURES)
    run_all(page)
    page.wait_for_function(
        "() => window.figures.filter(figure => figure.running).length >= 2",
        timeout=PAGE_TIMEOUT_MS,
    )
    figures = page.evaluate("() => window.figures")
    first, second = [figure for figure in figures if figure["running"]][:2]
    assert first["src"].startswith("data:image/png") and first["src"] != second["src"]
    cell = page.locator(".jp-CodeCell").filter(has_text="plot.set_train_batch(")
    page.set_viewport_size({"width": 1280, "height": 1500})  # the whole loop and its figure
    cell.evaluate("cell => cell.scrollIntoView()")
    figure = cell.locator(".jp-OutputArea-output img")
    if ui == "lab":
        screenshot(page, "training.png", figure)
    screenshot(page, f"training-{ui}.png")

    wait_for_file(training_model)  # saved after the first epoch that beats the initial weights
    server.shutdown_kernels()  # the kernel is stopped mid-training: what it saved must load
    assert load_model(training_model).info["dataset"] == "sample"


# How a visitor's kernel is freed. Leaving the page: Voila's page asks for its kernel's
# shutdown as it unloads (culling off here). A tab that vanishes without unloading (headless
# Chromium's page.close sends nothing): culling, after 3 s idle, checked every second.
KERNEL_FREEING = {
    "leave-page": ["--MappingKernelManager.cull_idle_timeout=0"],
    "culling": ["--pool_size=0",  # a kernel started by the visit, as culling sees a tab's
                "--MappingKernelManager.cull_idle_timeout=3",
                "--MappingKernelManager.cull_interval=1",
                "--MappingKernelManager.cull_connected=False"],
}  # fmt: skip


@pytest.mark.parametrize("how", KERNEL_FREEING)
def test_a_closed_search_page_frees_its_kernel(database, browser, how):
    app = VoilaServer(extra_args=KERNEL_FREEING[how])  # python -m capstone.app, as `make app`
    try:
        page = browser.new_page()
        console, requests = [], []
        page.on("console", lambda message: console.append(f"{message.type}: {message.text}"))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(app.base_url + "/", timeout=PAGE_TIMEOUT_MS)
        page.wait_for_selector(".capstone-query input", timeout=PAGE_TIMEOUT_MS)
        search(page, database, "a red boat on the water")  # through the websocket guard
        # the page's front ends fit each other (no "Unsatisfied version" of a shared module),
        # nothing warns or fails, and every asset comes from this server
        assert not [line for line in console if not line.startswith(("debug:", "log:", "info:"))
                    or "version" in line or "trust" in line], console
        assert all(url.startswith((app.base_url, "data:", "blob:")) for url in requests), requests
        kernel_id = re.search(r'kernelId": "([0-9a-f-]+)"', page.content()).group(1)
        # the page's kernel, among those the server keeps ready for the next visitors
        (kernel,) = [k for k in app.kernels() if kernel_id in " ".join(k.cmdline())]
        assert kernel.is_running()
        if how == "leave-page":
            page.goto("about:blank")
        page.close()
        kernel.wait(timeout=60)  # psutil.TimeoutExpired if the kernel outlives the page
    finally:
        left = app.stop()
    assert not left, f"processes left behind: {left}"
