"""ADRA on a GPU: the victim's gradients equal the CPU's, and a whole attack runs there.

Skipped, with the reason, where torch sees no CUDA device.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from attacks.adra.attack import ADRA
from attacks.adra.victim import Victim
from attacks.base import Knowledge
from fednas.config import parse_config
from fednas.data import ClientSplit, ImageSet
from fednas.spaces import InputSpec, build_supernet
from tests.attacks.test_adra import SPEC, _blobs, make_capture

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason=f"torch {torch.__version__} sees no CUDA device on this machine")


def test_victim_gradients_on_cuda_equal_the_cpu():
    cfg = parse_config({"dag-nodes": 4, "channels": 4, "head": "flatten"})
    spec = InputSpec(1, 6, 5)
    model = build_supernet(cfg.space, spec, 1)
    alpha = {n: p.detach() + 0.3 * torch.randn_like(p) for n, p in model.named_arch_parameters()}
    x = torch.rand(3, 2, 1, 6, 6)
    y = F.one_hot(torch.randint(0, 5, (3, 2)), 5).float()
    cpu = Victim(cfg.space, spec, alpha, [model.weight_state()]).grads(x, y)
    gpu = Victim(cfg.space, spec, alpha, [model.weight_state()], device="cuda").grads(x.cuda(), y.cuda())
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=1e-3, atol=1e-6)


def test_an_attack_runs_on_cuda_and_says_so():
    cfg = parse_config({"dag-nodes": 4, "channels": 4, "head": "flatten", "alpha-optimizer": "sgd", "alpha-lr": 0.01,
                        "local-steps": 1, "alpha-batch-size": 1, "adra-iterations": 5, "device": "cuda"})
    gen = torch.Generator().manual_seed(0)
    data = ImageSet("blobs", _blobs(40, gen), torch.randint(0, 4, (40,), generator=gen), 4)
    split = ClientSplit(0, np.arange(0, 15), np.arange(15, 30), np.arange(0))
    cap, _ = make_capture(cfg, data, split)
    knowledge = Knowledge(cfg, SPEC, data.x[30:].numpy(), data.y[30:].numpy())
    rec = ADRA(cfg.attack).reconstruct([cap], knowledge)[0]
    assert rec.status == "ok", rec.reason
    assert rec.details["device"].startswith("cuda")
    assert rec.images.shape == (1, 1, 4, 4) and np.isfinite(rec.images).all()


def test_a_gpu_evaluates_more_hypotheses_per_residual_call_than_the_cpu():
    from attacks.adra.solver import SET_BUDGET, set_budget

    assert set_budget(torch.device("cpu")) == SET_BUDGET
    assert set_budget(torch.device("cuda")) >= SET_BUDGET
