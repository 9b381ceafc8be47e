"""Training: the loss by hand, gradients, learning, keeping the best model, live curves, CLI."""

import dataclasses
import json

import numpy as np
import pytest
from test_triples import DATASET, EMBEDDINGS, GLOVE, TEXT

from capstone.ui.live import LivePlot
from capstone.course.image import ImageEmbedder
from capstone.data.model import SearchModel
from capstone.course.train import PRESETS, Settings, resolve_settings, train_epoch
from capstone.pipeline.training import train
from capstone.course.triples import Triples, make_triples, triple_metrics

# The loop's mechanics, from a random start: the default's text map starts from the CCA solution,
# which a few epochs on this small set need not improve (tests/test_learned_text.py trains it).
FAST = dict(text=TEXT, plot=False, progress=False, n_candidates=10, text_map="none")


def two_d_embedder():
    image = ImageEmbedder(2, 2, seed=0)
    image.dense.weight.data[...] = np.eye(2)
    return image


class Recorded:
    """Stands in for noggin's recorder (each batch's metrics) and for an optimiser (each
    step's gradients, nothing changed)."""

    def __init__(self, parameters=()):
        self.parameters, self.batches, self.grads = parameters, [], []

    def set_train_batch(self, metrics, batch_size):
        self.batches.append(metrics)

    def set_train_epoch(self):
        pass

    def step(self):
        self.grads.append([parameter.grad.copy() for parameter in self.parameters])


def one_batch(image, text, good, bad, margin):
    """The loss and accuracy :func:`train_epoch` reports for one batch, and its gradients."""
    features = np.concatenate([good, bad])
    rows = np.arange(len(text))
    triples = Triples(rows, rows, rows + len(text))
    recorded = Recorded(image.parameters)
    train_epoch(image, recorded, features, text, triples,
                Settings(batch_size=len(text), margin=margin), recorded)
    return recorded.batches[0], recorded.grads[0]


def test_loss_matches_a_hand_computation():
    text = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], np.float32)
    good = np.array([[2.0, 0.0], [0.0, 3.0], [3.0, 4.0]], np.float32)  # unit: e1, e2, (.6, .8)
    bad = np.array([[1.0, 1.0], [4.0, 3.0], [0.0, 5.0]], np.float32)  # (.707, .707), (.8, .6), e2
    metrics, _ = one_batch(two_d_embedder(), text, good, bad, 0.25)
    by_hand = (max(0, 0.25 - (1 - np.sqrt(0.5))) + max(0, 0.25 - 0.4) + max(0, 0.25 - 0.2)) / 3
    assert metrics["loss"] == pytest.approx(by_hand, rel=1e-5)  # only triples 1 and 3 count
    assert metrics["accuracy"] == 1.0  # every good image is closer than its bad one


def test_gradient_matches_finite_differences_and_does_not_accumulate():
    image = ImageEmbedder(512, TEXT.dim, seed=1)
    triples = make_triples(DATASET, EMBEDDINGS, seed=0)
    batch = (EMBEDDINGS[triples.caption_rows[:32]], DATASET.features[triples.good_rows[:32]],
             DATASET.features[triples.bad_rows[:32]])
    grads = []
    for _ in range(2):  # a second backward on a new graph must not add to the first
        grads.append(one_batch(image, *batch, 0.25)[1][0])
    np.testing.assert_array_equal(grads[0], grads[1])
    row, column = np.unravel_index(np.abs(grads[0]).argmax(), grads[0].shape)
    step, values = 1e-2, []
    for sign in (1, -1):
        image.dense.weight.data[row, column] += sign * step
        values.append(one_batch(image, *batch, 0.25)[0]["loss"])
        image.dense.weight.data[row, column] -= sign * step
    assert (values[0] - values[1]) / (2 * step) == pytest.approx(grads[0][row, column], rel=0.05)


def validation_accuracy(model):
    triples = make_triples(DATASET, EMBEDDINGS, split="validation")
    captions = model.embed_text(DATASET.captions)  # through the model's text map, if it has one
    return triple_metrics(model.embed_images(DATASET.features), captions, triples, 0.25)


def test_training_improves_validation_triple_accuracy():
    # 3 epochs of 1,500 captions are 36 steps: at the default's temperature (0.2) hard-triple
    # accuracy rises only 0.14 in so few (R@10 still rises), at 0.05 by 0.19
    model, history = train(DATASET, epochs=3, out=False, temperature=0.05, **FAST)
    untrained = SearchModel(ImageEmbedder(512, TEXT.dim, seed=0), TEXT)
    before, after = validation_accuracy(untrained), validation_accuracy(model)
    assert after["accuracy"] > before["accuracy"] + 0.15
    assert after["loss"] < before["loss"]
    assert [record["epoch"] for record in history.records] == [1, 2, 3]
    best = max(history.records, key=lambda record: record["val_accuracy"])
    assert after["accuracy"] == pytest.approx(best["val_accuracy"])
    assert model.info["metrics"]["triple_accuracy"] == pytest.approx(best["val_accuracy"])
    assert model.info["settings"]["optimizer"] == PRESETS["default"].optimizer == "adam"


def test_the_same_seed_trains_the_same_model():
    runs = [train(DATASET, epochs=1, out=False, seed=7, **FAST)[0].checksum for _ in range(2)]
    assert runs[0] == runs[1]
    assert train(DATASET, epochs=1, out=False, seed=8, **FAST)[0].checksum != runs[0]


def test_interrupt_returns_the_saved_best_model(tmp_path, capsys):
    out = tmp_path / "model.npz"
    snapshots = {}

    def interrupt_in_epoch_two(epoch, batch_index, metrics):
        if epoch == 2 and batch_index == 0:
            snapshots["after epoch 1"] = SearchModel.load(out, glove=GLOVE).checksum
        if epoch == 2 and batch_index == 3:
            raise KeyboardInterrupt

    model, history = train(DATASET, epochs=5, out=out, on_batch=interrupt_in_epoch_two, **FAST)
    assert history.interrupted and history.best_epoch == 1 and len(history.records) == 1
    assert history.kept  # the best epoch so far, saved as it came
    assert model.checksum == SearchModel.load(out, glove=GLOVE).checksum
    assert model.checksum == snapshots["after epoch 1"]
    printed = capsys.readouterr().out
    assert "interrupted in epoch 2: returning the best model so far (epoch 1" in printed


def test_best_model_is_saved_with_settings_and_metrics(tmp_path):
    out = tmp_path / "model.npz"
    model, history = train(DATASET, epochs=2, out=out, preset="course", lr=0.05, **FAST)
    saved = SearchModel.load(out, glove=GLOVE)
    assert saved.checksum == model.checksum
    assert saved.info["settings"] == {**dataclasses.asdict(PRESETS["course"]), "epochs": 2, "lr": 0.05,
                                      "n_candidates": 10, "preset": "course", "seed": 0}
    assert saved.info["metrics"]["best_epoch"] == history.best_epoch >= 1 and history.kept
    assert {"triple_accuracy", "recall@1", "median_rank"} <= set(saved.info["metrics"])
    assert sorted(path.name for path in tmp_path.iterdir()) == ["model.npz"]


def test_a_run_no_better_than_untrained_is_not_kept_nor_saved(tmp_path, capsys):
    alike = dataclasses.replace(DATASET, features=np.ones_like(DATASET.features))
    out = tmp_path / "model.npz"
    model, history = train(alike, epochs=2, out=out, **FAST)
    assert not history.kept and history.best_epoch == 0 and not history.interrupted
    assert not out.exists() and "calibration" not in model.info
    assert f"no epoch did better than the untrained model, so {out}" in capsys.readouterr().err


def test_a_model_path_that_is_not_npz_is_refused_before_training(tmp_path):
    def no_batch_expected(*_):
        raise AssertionError("trained before checking out")

    with pytest.raises(ValueError, match="must end in .npz"):
        train(DATASET, epochs=1, out=tmp_path / "model.pkl", on_batch=no_batch_expected, **FAST)
    assert not any(tmp_path.iterdir())


def test_presets_and_overrides():
    course = resolve_settings("course")
    assert (course.optimizer, course.lr, course.momentum, course.margin, course.batch_size,
            course.n_candidates) == ("sgd", 1e-3, 0.9, 0.25, 32, 25)
    assert resolve_settings(None, epochs=2) == PRESETS["default"].replace(epochs=2, lr=None)
    assert resolve_settings(None, epochs=2) == Settings(epochs=2, text_map="linear",
                                                        text_map_init="cca", weighting="mean",
                                                        temperature=0.2)
    # SIF weighting has no text map: the default drops it, an explicit one is refused
    assert resolve_settings(None, weighting="sif").text_map == "none"
    with pytest.raises(ValueError, match="a text map maps idf or mean sums"):
        resolve_settings(None, weighting="sif", text_map="linear")
    with pytest.raises(ValueError, match="weighting must be one of"):
        resolve_settings(None, weighting="tfidf")
    assert resolve_settings(course, seed=3).seed == 3 and course.seed == 0  # frozen: a copy
    with pytest.raises(ValueError, match="preset must be one of"):
        resolve_settings("fast")
    with pytest.raises(ValueError, match="optimizer must be one of"):
        resolve_settings("course", optimizer="rmsprop")
    with pytest.raises(ValueError, match="epochs must be at least 1"):
        resolve_settings("course", epochs=0)


# -- live curves -----------------------------------------------------------------------------------
class FakeDisplay:
    """Stands in for IPython's display(obj, display_id=True) and its handle's update(obj)."""

    def __init__(self):
        self.shown, self.updates = [], []

    def __call__(self, obj, display_id=False):
        assert display_id is True
        self.shown.append(obj)
        return self

    def update(self, obj):
        self.updates.append(obj)

    @property
    def pngs(self):
        return [obj.data for obj in self.shown + self.updates]


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def feed(plot, clock, n_batches, seconds_per_batch):
    for i in range(n_batches):
        clock.now += seconds_per_batch
        plot.set_train_batch({"loss": 1 / (i + 1), "accuracy": i / n_batches}, batch_size=32)


def test_live_plot_pushes_new_pngs_at_a_limited_rate():
    display, clock = FakeDisplay(), FakeClock()
    plot = LivePlot(live=True, display=display, clock=clock, min_interval=0.5)
    feed(plot, clock, n_batches=200, seconds_per_batch=0.05)  # 10 s of training
    assert len(display.shown) == 1  # one display slot, then updates to it
    assert 15 <= plot.n_updates <= 20  # at most one per 0.5 s
    plot.set_train_epoch()
    plot.set_test_batch({"loss": 0.5, "accuracy": 0.6}, batch_size=100)
    plot.set_test_epoch()
    plot.close()  # the final figure is always pushed
    pngs = display.pngs
    assert len(pngs) == plot.n_updates and all(png.startswith(b"\x89PNG") for png in pngs)
    assert len(set(pngs)) == len(pngs)  # every update is a new picture


def test_live_plot_spends_at_most_its_share_of_time_drawing():
    display, clock = FakeDisplay(), FakeClock()
    plot = LivePlot(live=True, display=display, clock=clock, min_interval=0.0,
                    max_fraction_spent_plotting=0.1)
    draw = plot.plotter.plot

    def slow_draw(*args, **kwargs):  # each redraw takes 1 s of the fake clock
        clock.now += 1.0
        return draw(*args, **kwargs)

    plot.plotter.plot = slow_draw
    feed(plot, clock, n_batches=200, seconds_per_batch=0.5)  # 100 s of training
    drawing_share = (plot.n_updates - 1) / clock.now  # the first redraw has no history yet
    assert 0.07 <= drawing_share <= 0.1


def test_headless_plot_only_records_and_draws_at_the_end():
    display, clock = FakeDisplay(), FakeClock()
    plot = LivePlot(live=False, display=display, clock=clock)
    feed(plot, clock, n_batches=50, seconds_per_batch=1.0)
    figure = plot.close()
    assert display.pngs == [] and plot.n_updates == 0
    lines = [line for axis in figure.axes for line in axis.get_lines() if len(line.get_xdata())]
    assert len(lines) == 2  # batch-level loss and accuracy curves were drawn
    assert len(plot.train_metrics["loss"]["batch_data"]) == 50


def test_training_in_a_notebook_updates_the_display(monkeypatch):
    import IPython.display

    display = FakeDisplay()
    monkeypatch.setattr(IPython.display, "display", display)
    _, history = train(DATASET, epochs=2, out=False, text=TEXT, plot=True, live=True,
                       progress=False, n_candidates=10)
    assert history.recorder.n_updates >= 1 and len(display.shown) == 1
    assert history.figure is history.recorder.figure
    assert len(history.recorder.test_metrics["accuracy"]["epoch_data"]) == 2


# -- command line ----------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def small_sample(tmp_path_factory):
    """A 200-image sample in the course's formats, read as the ``coco`` dataset."""
    from capstone.sample import write_sample

    return write_sample(tmp_path_factory.mktemp("sample-200"), n_images=200)


def test_cli_train_prints_one_json_line_and_saves(small_sample, tmp_path, monkeypatch, capsys):
    from capstone.apps.cli import main

    monkeypatch.setenv("CAPSTONE_DATA_DIR", str(small_sample))
    out = tmp_path / "model.npz"
    assert main(["train", "--dataset", "coco", "--epochs", "2", "--seed", "3",
                 "--out", str(out)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary["model"] == str(out) and summary["dataset"] == "coco"
    assert summary["checksum"] == SearchModel.load(out).checksum
    assert summary["epochs_run"] == 2 and summary["interrupted"] is False
    for name in ("triple_accuracy", "recall@1", "recall@5", "recall@10", "median_rank",
                 "i2t_recall@1", "i2t_median_rank", "concept_precision@10"):
        assert isinstance(summary[name], float), name


def test_cli_train_rejects_bad_input(capsys):
    from capstone.apps.cli import main

    assert main(["train", "--dataset", "imagenet"]) == 2
    assert "unknown dataset name 'imagenet'" in capsys.readouterr().err
