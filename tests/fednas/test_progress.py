import math

import numpy as np
import pytest
import torch

from fednas.progress import (MAX_ENTROPY, SearchProgress, alpha_distance, alpha_entropy, genotype_changes,
                             parameter_free_share)
from fednas.spaces.genotype import Genotype


def test_entropy_is_ln8_for_undecided_and_zero_for_decided_edges():
    assert alpha_entropy({"alpha": torch.zeros(5, 8)}) == pytest.approx(math.log(8)) == pytest.approx(MAX_ENTROPY)
    decided = torch.full((5, 8), -1e4)
    decided[:, 3] = 0
    assert alpha_entropy({"alpha_normal": decided, "alpha_reduce": decided}) == pytest.approx(0.0, abs=1e-9)
    # the mean over every edge of both cells, against a direct computation
    a = torch.randn(14, 8, generator=torch.Generator().manual_seed(0))
    b = 3 * torch.randn(14, 8, generator=torch.Generator().manual_seed(1))
    p = torch.softmax(torch.cat([a, b]).double(), -1)
    assert alpha_entropy({"alpha_normal": a, "alpha_reduce": b}) == pytest.approx(float(-(p * p.log()).sum(1).mean()))


def test_distance_is_the_l2_norm_over_every_alpha_and_ignores_theta():
    a = {"alpha_normal": torch.zeros(2, 8), "alpha_reduce": torch.zeros(2, 8), "w": torch.zeros(3)}
    b = {"alpha_normal": torch.full((2, 8), 0.5), "alpha_reduce": torch.zeros(2, 8), "w": torch.ones(3)}
    assert alpha_distance(a, b) == pytest.approx(0.5 * 4)


G1 = Genotype("dag", {"dag": ((("sep_conv_3x3", 0),), (("max_pool_3x3", 0), ("skip_connect", 1)))}, (2,))
G2 = Genotype("dag", {"dag": ((("sep_conv_3x3", 0),), (("max_pool_3x3", 0), ("dil_conv_3x3", 1)))}, (2,))


def test_parameter_free_share_and_changes_count_kept_edges():
    assert parameter_free_share(G1) == pytest.approx(2 / 3)
    assert parameter_free_share(G2) == pytest.approx(1 / 3)
    assert genotype_changes(G1, G2) == 1 and genotype_changes(G1, G1) == 0


def test_progress_remembers_the_start_and_the_previous_round():
    p = SearchProgress()
    first = p.update({"alpha": torch.zeros(3, 8)}, G1)
    assert first["alpha-drift"] == 0 and "alpha-step" not in first
    second = p.update({"alpha": torch.ones(3, 8)}, G2)
    third = p.update({"alpha": 2 * torch.ones(3, 8)}, G2)
    assert second["alpha-step"] == pytest.approx(np.sqrt(24)) and third["alpha-drift"] == pytest.approx(2 * np.sqrt(24))
    assert second["genotype-changes"] == 1 and third["genotype-changes"] == 0
