"""Independent recomputations the tests compare the project's reported figures against."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from fednas.data import dataset_from_config
from fednas.spaces import build_supernet


def accuracy(cfg, arrays: Mapping[str, object], indices) -> float:
    """Share of ``indices`` whose label the model of ``arrays`` (eval mode) predicts, counted here."""
    dataset = dataset_from_config(cfg.data, cfg.run.seed)
    model = build_supernet(cfg.space, dataset.spec, cfg.run.seed)
    model.load_arrays({k: torch.as_tensor(np.asarray(v)) for k, v in arrays.items()})
    model.eval()
    idx = np.asarray(indices)
    with torch.no_grad():
        predicted = model(dataset.x[idx]).argmax(1)
    return int((predicted == dataset.y[idx]).sum()) / len(idx)
