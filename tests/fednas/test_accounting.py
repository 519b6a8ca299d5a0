"""The accountants against independent references: the Gaussian mechanism's privacy profile
integrated from its definition (tests/dp_reference.py), RDP's closed form without
subsampling, and the subsampled Gaussian's RDP at integer orders (Mironov, Talwar, Zhang 2019)."""

import math

import numpy as np
import pytest
from opacus.accountants.analysis.rdp import compute_rdp
from scipy.special import gammaln, logsumexp

from fednas.accounting import RDP_ORDERS, GaussianEvent, Ledger, epsilon, epsilons, merged
from tests import dp_reference as reference


def rdp_epsilon_closed_form(noise_multiplier: float, steps: int, delta: float) -> float:
    """RDP of the Gaussian, α·T/(2z²), converted at the same orders with Balle et al. 2020's
    bound ε = RDP(α) + log((α−1)/α) − (log δ + log α)/(α−1)."""
    a = np.array(RDP_ORDERS)
    rdp = a * steps / (2 * noise_multiplier**2)
    return float(np.min(rdp + np.log((a - 1) / a) - (np.log(delta) + np.log(a)) / (a - 1)))


def subsampled_rdp_binomial(q: float, noise_multiplier: float, order: int) -> float:
    """RDP at integer order α of the Poisson-subsampled Gaussian:
    log Σ_k C(α,k) (1−q)^{α−k} q^k exp((k²−k)/(2z²)) / (α−1)."""
    k = np.arange(order + 1)
    log_binom = gammaln(order + 1) - gammaln(k + 1) - gammaln(order - k + 1)
    terms = log_binom + (order - k) * np.log1p(-q) + k * np.log(q) + (k * k - k) / (2 * noise_multiplier**2)
    return float(logsumexp(terms) / (order - 1))


@pytest.mark.parametrize("z, steps", [(0.5, 1), (1.0, 3), (5.0, 10), (0.05, 2)])
def test_rdp_epsilon_without_subsampling_equals_the_closed_form(z, steps):
    got = epsilon([GaussianEvent(z, 1.0, steps)], 1e-5, "rdp")
    assert got == pytest.approx(rdp_epsilon_closed_form(z, steps, 1e-5), rel=1e-9)
    assert got >= epsilon([GaussianEvent(z, 1.0, steps)], 1e-5, "prv") - 1e-9  # RDP is an upper bound


@pytest.mark.parametrize("events", [
    [(1.0, 1)], [(2.0, 5)], [(0.8, 3)], [(0.5, 3)], [(0.05, 3)],  # the update mod: z = σ/(2C), one per round
    [(0.5, 2), (2.0, 4)],  # rounds of different noise compose to one Gaussian with μ² = Σ T/z²
])
def test_the_tight_epsilon_without_subsampling_is_exact(events):
    got = epsilon([GaussianEvent(z, 1.0, t) for z, t in events], 1e-5, "prv")
    mu = math.sqrt(sum(t / z**2 for z, t in events))
    # the privacy profile, integrated from its definition, is δ at the reported ε, and above δ just below it
    assert reference.gaussian_delta(mu, got) == pytest.approx(1e-5, rel=1e-4)
    assert reference.gaussian_delta(mu, got * 0.999) > 1.0001e-5
    if events == [(0.5, 3)]:  # what docs/privacy.md reports for the paper's σ = 0.1 at C = 0.1
        assert got == pytest.approx(20.125, abs=1e-3) and epsilon([GaussianEvent(0.5, 1.0, 3)], 1e-5) > got


def test_the_tight_epsilon_of_one_subsampled_step_is_within_its_error_of_the_exact_profile():
    # one DP-SGD step at z = 1, q = 1/243 (the example): RDP says 0.80
    q, z = 1 / 243, 1.0
    eps = epsilons([GaussianEvent(z, q, 1)], 1e-5)
    assert eps["rdp"] == pytest.approx(0.803, abs=1e-3)
    # PRV is an upper estimate within eps_error = 0.01 of the exact ε (found here at 0.0646)
    assert reference.subsampled_delta(q, z, eps["prv"]) <= 1e-5
    assert reference.subsampled_delta(q, z, eps["prv"] - 0.0101) > 1e-5


def test_events_of_the_same_mechanism_merge_exactly():
    events = [GaussianEvent(1.1, 0.2, 3), GaussianEvent(0.5, 1.0, 1), GaussianEvent(1.1, 0.2, 2)]
    assert merged(events) == [GaussianEvent(1.1, 0.2, 5), GaussianEvent(0.5, 1.0, 1)]


@pytest.mark.parametrize("q, z", [(0.01, 1.0), (0.2, 1.1), (0.13, 0.7), (0.9, 2.0)])
def test_subsampled_rdp_equals_the_binomial_expansion_at_integer_orders(q, z):
    orders = [2, 3, 5, 8, 16, 32]
    got = compute_rdp(q=q, noise_multiplier=z, steps=7, orders=orders)
    want = [7 * subsampled_rdp_binomial(q, z, a) for a in orders]
    np.testing.assert_allclose(got, want, rtol=1e-8)


def test_subsampling_amplifies_and_prv_is_tighter_than_rdp():
    full = epsilon([GaussianEvent(1.0, 1.0, 50)], 1e-5)
    sub = epsilon([GaussianEvent(1.0, 0.05, 50)], 1e-5)
    prv = epsilon([GaussianEvent(1.0, 0.05, 50)], 1e-5, "prv")
    assert sub < full / 5 and prv <= sub


def test_ledger_composes_rounds_as_one_longer_run_and_round_trips():
    ledger = Ledger.empty()
    for _ in range(3):
        ledger.add("dp-sgd", GaussianEvent(1.1, 0.2, 5))
    ledger.add("dp-update", GaussianEvent(0.5, 1.0, 1))
    one = epsilon([GaussianEvent(1.1, 0.2, 15)], 1e-5)
    assert ledger.epsilon("dp-sgd", 1e-5) == pytest.approx(one, rel=1e-12)
    again = Ledger.from_json(ledger.to_json())
    assert again == ledger and again.epsilon("dp-update", 1e-5) == epsilon([GaussianEvent(0.5, 1.0, 1)], 1e-5)


def test_edge_cases():
    assert epsilon([], 1e-5) == 0.0
    assert epsilon([GaussianEvent(0.0, 0.1, 3)], 1e-5) == math.inf
    with pytest.raises(ValueError, match="delta"):
        epsilon([GaussianEvent(1.0, 0.1, 3)], 1.5)
    with pytest.raises(ValueError, match="unknown accountant"):
        epsilon([GaussianEvent(1.0, 0.1, 3)], 1e-5, "moments")
    with pytest.raises(ValueError, match="sample_rate"):
        GaussianEvent(1.0, 0.0, 3)


def test_the_rdp_orders_start_with_opacus_own_and_opacus_is_not_imported_with_the_module():
    import subprocess
    import sys

    from opacus.accountants import RDPAccountant

    from fednas.accounting import OPACUS_ORDERS

    assert list(OPACUS_ORDERS) == list(RDPAccountant.DEFAULT_ALPHAS) and RDP_ORDERS[:len(OPACUS_ORDERS)] == OPACUS_ORDERS
    # every ClientApp process imports the accountant through the DP mods: opacus (~2 s) only when it accounts
    code = "import sys, clients.client_app; print('opacus' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
