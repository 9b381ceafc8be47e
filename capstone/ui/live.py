"""Live training curves in Jupyter, with noggin recording the metrics and drawing the figure.

noggin 0.10 only animates under the classic ``nbAgg`` backend, which JupyterLab 4 and Notebook 7
do not run, and an ipympl figure stays blank under "Run All" until the kernel is idle. What works
in both is an ordinary PNG re-shown through an IPython display handle: :class:`LivePlot` lets
noggin record and draw, and, at most every so often, pushes a fresh PNG of the figure to one
display slot. Outside a Jupyter kernel it only records, and draws the final figure at the end.

At COCO size an epoch is 10,000 batches, so two more things keep the curves readable: a moving
average drawn over the noisy per-batch curve, and (given a ``validate`` function) a validation
point every :data:`VALIDATE_EVERY` training triples, not only at each epoch's end.
"""

from __future__ import annotations

import io
import time
import warnings
from collections import deque

import numpy as np

VALIDATE_EVERY = 100_000  # training triples between validation points (a COCO epoch: ~331,000)
SMOOTHING = 50  # the moving average spans 1/50 of the batches so far


def moving_average(values, window: int) -> np.ndarray:
    """Mean of each value and the ``window - 1`` before it (fewer at the start)."""
    values = np.asarray(values, dtype=np.float64)
    sums = np.cumsum(np.r_[0.0, values])
    counts = np.minimum(np.arange(1, len(values) + 1), window)
    ends = np.arange(1, len(values) + 1)
    return (sums[ends] - sums[ends - counts]) / counts


def in_jupyter_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (where a front end can show live output)."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython is a dependency
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def figure_png(figure) -> bytes:
    """The figure rendered as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    return buffer.getvalue()


class LivePlot:
    """noggin's plot of train/validation metrics, shown live in a notebook through a display handle.

    Parameters
    ----------
    metrics : sequence of str
        Metric names, one panel each.
    live : bool, optional
        Push updates while training; by default only inside a Jupyter kernel.
    display : callable, optional
        ``display(obj, display_id=True) -> handle`` with ``handle.update(obj)``; by default
        :func:`IPython.display.display`. Tests pass a fake.
    max_fraction_spent_plotting : float
        Redraw only while the mean redraw time stays below this share of the time between
        redraws (noggin's rule).
    min_interval : float
        Seconds between two redraws at least.
    last_n_batches : int, optional
        Show only the latest batches (noggin's option).
    validate : callable, optional
        ``validate() -> {"loss": ..., "accuracy": ...}`` of the model now; called (and recorded
        as a validation point) once ``validate_every`` training triples went by since the last
        validation point. The epoch's own validation (:meth:`set_test_epoch`) resets the count.
    validate_every : int, optional
        Training triples between validation points (default :data:`VALIDATE_EVERY`).
    clock : callable
        Seconds as a float; tests pass a fake.

    Attributes
    ----------
    plotter : noggin.LivePlot
        The metric recorder (``plotter.train_metrics``, ``plotter.test_metrics``).
    figure : matplotlib.figure.Figure
    n_updates : int
        PNGs pushed to the display so far.
    """

    def __init__(
        self,
        metrics=("loss", "accuracy"),
        *,
        live: bool | None = None,
        display=None,
        max_fraction_spent_plotting: float = 0.1,
        min_interval: float = 0.5,
        last_n_batches: int | None = None,
        validate=None,
        validate_every: int | None = None,
        clock=time.perf_counter,
    ):
        with warnings.catch_warnings():  # noggin warns that its own (nbAgg) live mode is off
            warnings.simplefilter("ignore")
            import noggin  # pandas, xarray and matplotlib: ~100 MB, only when drawn

            self.plotter, self.figure, _ = noggin.create_plot(
                list(metrics),
                max_fraction_spent_plotting=0.0,
                last_n_batches=last_n_batches,
                ncols=len(metrics),
                figsize=(4.5 * len(metrics), 3.5),
            )
        self.live = in_jupyter_kernel() if live is None else live
        self.max_fraction_spent_plotting = max_fraction_spent_plotting
        self.min_interval = min_interval
        self.clock = clock
        self.validate, self.validate_every = validate, validate_every or VALIDATE_EVERY
        self._since_validation = 0
        self._smoothed = {}  # metric -> its moving-average line
        self.n_updates = 0
        self._plot_seconds = deque(maxlen=4)
        self._last_update = clock()
        self._handle = None
        if self.live:
            import matplotlib.pyplot as plt

            plt.close(self.figure)  # shown through the handle only, not again at the cell's end
            if display is None:
                from IPython.display import display
            self._display = display

    # -- recording (noggin's interface) --------------------------------------------------------
    @property
    def train_metrics(self) -> dict:
        """noggin's record of the training metrics (batch and epoch level)."""
        return self.plotter.train_metrics

    @property
    def test_metrics(self) -> dict:
        """noggin's record of the validation metrics."""
        return self.plotter.test_metrics

    def set_train_batch(self, metrics: dict, batch_size: int):
        """Record one training batch's metrics; validate and redraw if due."""
        self.plotter.set_train_batch(metrics, batch_size=batch_size, plot=False)
        self._since_validation += batch_size
        if self.validate is not None and self._since_validation >= self.validate_every:
            validation = self.validate()
            self.set_test_batch({name: validation[name] for name in self.plotter.metrics
                                 if name in validation}, batch_size=1)
            self.set_test_epoch()  # a point on the validation curve, at this batch
        self.update()

    def set_train_epoch(self):
        """Close a training epoch (epoch means of the batches)."""
        self.plotter.set_train_epoch()

    def set_test_batch(self, metrics: dict, batch_size: int):
        """Record validation metrics."""
        self.plotter.set_test_batch(metrics, batch_size=batch_size)

    def set_test_epoch(self):
        """Close a validation epoch (a validation point) and redraw, if due."""
        self.plotter.set_test_epoch()
        self._since_validation = 0
        self.update()

    # -- drawing -------------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether a live redraw is allowed now by the rate limits."""
        if not self.live:
            return False
        elapsed = self.clock() - self._last_update
        mean_plot = sum(self._plot_seconds) / len(self._plot_seconds) if self._plot_seconds else 0
        return (
            elapsed >= self.min_interval
            and mean_plot <= self.max_fraction_spent_plotting * (elapsed + mean_plot)
        )

    def update(self, force: bool = False) -> bool:
        """Redraw and push a new PNG to the display when live and due (or forced).

        Returns
        -------
        bool
            Whether a PNG was pushed.
        """
        if not (self.live and (force or self.due())):
            return False
        from IPython.display import Image

        start = self.clock()
        self.draw()
        image = Image(data=figure_png(self.figure), format="png")
        if self._handle is None:
            self._handle = self._display(image, display_id=True)
        else:
            self._handle.update(image)
        self._last_update = self.clock()
        self._plot_seconds.append(self._last_update - start)
        self.n_updates += 1
        return True

    def close(self):
        """Draw everything recorded; push the final PNG when live. Returns the figure.

        Also lets go of ``validate`` (and what it holds: the caption embeddings, the data).
        """
        self.validate = None
        if not self.update(force=True):
            self.draw()
        return self.figure

    def draw(self):
        """Let noggin draw everything recorded, add the moving averages, fit the layout.

        noggin calls the held-out curve "test"; here it is the validation split, so the legend
        says so.
        """
        self.plotter.plot()
        self.draw_moving_averages()
        for ax in self.figure.axes:
            for label in (ax.get_legend().get_texts() if ax.get_legend() else []):
                if label.get_text().startswith("test"):
                    label.set_text("validation" + label.get_text()[len("test"):])
        self.figure.tight_layout()

    def draw_moving_averages(self):
        """Over each per-batch curve, its moving average (when there are 100 batches or more).

        The window is 1/:data:`SMOOTHING` of the batches so far; the raw curve is drawn faint.
        """
        for name, record in self.plotter._train_metrics.items():  # noggin's live records
            values = record.batch_data
            if len(values) < 2 * SMOOTHING or record.batch_line is None:
                continue
            window = len(values) // SMOOTHING
            if name not in self._smoothed:
                record.batch_line.set_alpha(0.35)
                (self._smoothed[name],) = record.batch_line.axes.plot(
                    [], [], color=record.batch_line.get_color(), lw=1.5)
            line = self._smoothed[name]
            line.set_data(record.batch_domain, moving_average(values, window))
            line.set_label(f"train, mean of {window} batches")
            line.axes.legend()


def new_recorder(plot: bool, live: bool | None = None, validate=None):
    """noggin's recorder: a :class:`LivePlot` (drawn, live in a notebook) or a bare logger.

    ``validate`` is :class:`LivePlot`'s (validation points within long epochs), when drawn.
    """
    if not plot:
        return MetricLog()
    return LivePlot(("loss", "accuracy"), live=live, validate=validate)


class MetricLog:
    """What noggin's ``LiveLogger`` records (its four ``set_*`` methods, ``train_metrics`` and
    ``test_metrics``), for training that draws nothing.

    noggin's logger imports xarray and pandas (about 100 MB of a training run's memory), which
    only drawing needs. Each metric keeps its batch values and, per epoch, the mean of the
    batches since the last epoch weighted by batch size, as noggin computes it.
    """

    def __init__(self):
        self._metrics = {"train": {}, "test": {}}
        self._pending = {"train": {}, "test": {}}
        self._batches = 0

    def _add(self, kind, metrics, batch_size):
        for name, value in metrics.items():
            record = self._metrics[kind].setdefault(
                name, {"batch_data": [], "epoch_data": [], "epoch_domain": []})
            record["batch_data"].append(float(value))
            total, weight = self._pending[kind].get(name, (0.0, 0.0))
            self._pending[kind][name] = (total + batch_size * float(value), weight + batch_size)

    def _epoch(self, kind):
        for name, (total, weight) in self._pending[kind].items():
            record = self._metrics[kind][name]
            record["epoch_data"].append(total / (weight or 1.0))
            record["epoch_domain"].append(self._batches)
        self._pending[kind] = {}

    def set_train_batch(self, metrics: dict, batch_size: int, **kwargs):
        self._batches += 1
        self._add("train", metrics, batch_size)

    def set_train_epoch(self):
        self._epoch("train")

    def set_test_batch(self, metrics: dict, batch_size: int):
        self._add("test", metrics, batch_size)

    def set_test_epoch(self):
        self._epoch("test")

    def _arrays(self, kind) -> dict:
        return {name: {key: np.asarray(values) for key, values in record.items()}
                for name, record in self._metrics[kind].items()}

    @property
    def train_metrics(self) -> dict:
        """``{metric: {"batch_data", "epoch_data", "epoch_domain"}}`` of the training batches."""
        return self._arrays("train")

    @property
    def test_metrics(self) -> dict:
        """The same of the validation points."""
        return self._arrays("test")
