"""A short way: following ``dataset`` from ``train()`` visits few modules and seldom comes back.

Counted at run time (``sys.setprofile``) during one epoch on the sample, made and cached beforehand
whatever order the tests run in (on a fresh cache, the one-off writes of the sample and its caches
add ``capstone.files`` and 7 returns): a call counts when one of its arguments is the Dataset (not
as ``self``: the dataset's own methods do not pass it on), or, while ``load_dataset`` makes it, when
an argument is what it is made of (its name, folder or one of its two files). The path is the
modules of those calls in order, repeats in a row merged.
"""

import os
import sys

from capstone.data.dataset import Dataset, load_dataset
from capstone.pipeline.training import train


def carries(value) -> bool:
    if isinstance(value, dict):
        return any(carries(v) for v in value.values())
    if isinstance(value, (str, os.PathLike)):
        text = str(value)
        return text in ("sample", "coco") or text.endswith(
            ("/sample", "captions_train2014.json", "resnet18_features.pkl"))
    return False


def dataset_path(run) -> list:
    path, loading = [], [0]

    def profile(frame, event, arg):
        code, module = frame.f_code, frame.f_globals.get("__name__", "")
        if not module.startswith("capstone"):
            return
        if code.co_name == "load_dataset":
            loading[0] += {"call": 1, "return": -1}.get(event, 0)
        if event != "call":
            return
        names = code.co_varnames[: code.co_argcount + code.co_kwonlyargcount]
        args = [frame.f_locals.get(name) for name in names if name != "self"]
        if code.co_name == "load_dataset" or any(isinstance(a, Dataset) for a in args) or (
                loading[0] and any(carries(a) for a in args)):
            if not path or path[-1] != module:
                path.append(module)

    sys.setprofile(profile)
    try:
        run()
    finally:
        sys.setprofile(None)
    return path


def test_dataset_from_train_visits_at_most_8_modules_and_returns_at_most_5_times():
    load_dataset("sample")  # made and cached, as after the first run
    path = dataset_path(lambda: train("sample", epochs=1, out=False, plot=False, progress=False))
    returns = [module for i, module in enumerate(path) if module in path[:i]]
    assert path[0] == "capstone.data.dataset" and "capstone.course.evaluate" in path, path
    assert len(set(path)) <= 8 and len(returns) <= 5, " -> ".join(path)
