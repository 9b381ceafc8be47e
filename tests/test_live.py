"""Curves readable at COCO size: a moving average over the batches, validation within epochs."""

import numpy as np
import pytest
from test_triples import DATASET, TEXT
from test_train import FakeClock, FakeDisplay

from capstone.ui import live
from capstone.ui.live import LivePlot, moving_average
from capstone.course.train import PRESETS
from capstone.pipeline.training import train


def test_moving_average_is_the_mean_of_the_window_before_each_point():
    values = np.array([4.0, 2.0, 6.0, 0.0, 8.0])
    np.testing.assert_allclose(moving_average(values, 2), [4, 3, 4, 3, 4])
    np.testing.assert_allclose(moving_average(values, 3), [4, 3, 4, 8 / 3, 14 / 3])
    np.testing.assert_allclose(moving_average(values, 1), values)
    long = np.random.default_rng(0).normal(size=1000)
    expected = [long[max(0, i - 49): i + 1].mean() for i in range(1000)]
    np.testing.assert_allclose(moving_average(long, 50), expected)


def test_validation_points_come_every_so_many_triples_and_restart_at_each_epoch():
    calls = []

    def validate():
        calls.append(len(calls))
        return {"loss": 1.0 / (len(calls) + 1), "accuracy": 0.5 + 0.01 * len(calls),
                "accuracy_random": 0.9}

    plot = LivePlot(live=False, display=FakeDisplay(), clock=FakeClock(), validate=validate,
                    validate_every=100)
    for _ in range(10):  # 320 triples: validated after 128, 256
        plot.set_train_batch({"loss": 1.0, "accuracy": 0.5}, batch_size=32)
    assert len(calls) == 2
    plot.set_train_epoch()
    plot.set_test_batch({"loss": 0.2, "accuracy": 0.7}, batch_size=1)  # the epoch's own
    plot.set_test_epoch()
    for _ in range(3):  # 96 triples since the epoch's validation: none yet
        plot.set_train_batch({"loss": 1.0, "accuracy": 0.5}, batch_size=32)
    assert len(calls) == 2
    plot.set_train_batch({"loss": 1.0, "accuracy": 0.5}, batch_size=32)
    assert len(calls) == 3
    accuracy = plot.test_metrics["accuracy"]
    assert accuracy["epoch_data"].tolist() == pytest.approx([0.51, 0.52, 0.7, 0.53])
    assert accuracy["epoch_domain"].tolist() == [4, 8, 10, 14]  # at those batches


def test_the_figure_shows_a_moving_average_once_there_are_enough_batches():
    plot = LivePlot(live=False, display=FakeDisplay(), clock=FakeClock())
    rng = np.random.default_rng(0)
    for i in range(2 * live.SMOOTHING - 1):
        plot.set_train_batch({"loss": rng.random(), "accuracy": rng.random()}, batch_size=32)
    figure = plot.close()
    assert not any("mean of" in line.get_label() for ax in figure.axes for line in ax.lines)
    for i in range(500):
        plot.set_train_batch({"loss": rng.random(), "accuracy": rng.random()}, batch_size=32)
    figure = plot.close()
    smoothed = [line for ax in figure.axes for line in ax.lines
                if line.get_label().startswith("train, mean of")]
    assert len(smoothed) == 2  # loss and accuracy
    window = (2 * live.SMOOTHING - 1 + 500) // live.SMOOTHING
    assert smoothed[0].get_label() == f"train, mean of {window} batches"
    loss = plot.train_metrics["loss"]["batch_data"]
    np.testing.assert_allclose(smoothed[0].get_ydata(), moving_average(loss, window))
    assert max(np.std(line.get_ydata()) for line in smoothed) < np.std(loss) / 2


def test_training_on_big_data_validates_within_epochs(monkeypatch):
    n_triples = int(DATASET.train_captions_mask.sum())
    monkeypatch.setattr(live, "VALIDATE_EVERY", n_triples // 3)  # as if an epoch were big
    _, history = train(DATASET, epochs=2, out=False, text=TEXT, plot=True, live=False,
                       progress=False, n_candidates=10)
    accuracy = history.recorder.test_metrics["accuracy"]
    assert len(history.records) == 2 and len(accuracy["epoch_data"]) >= 6  # 2 + 2 per epoch
    epoch_ends = accuracy["epoch_domain"][np.isin(accuracy["epoch_data"], [
        record["val_accuracy"] for record in history.records])]
    assert len(epoch_ends) >= 2  # the epochs' own validations are among the points
    assert history.recorder.validate is None  # the history keeps no caption embeddings alive


def test_the_class_preset_trades_epochs_for_bigger_batches():
    default, chosen = PRESETS["default"], PRESETS["class"]
    assert chosen.batch_size > default.batch_size and chosen.epochs < default.epochs
    assert (chosen.optimizer, chosen.lr, chosen.margin) == (default.optimizer, default.lr,
                                                            default.margin)
