"""The batched Levenberg–Marquardt solver against problems with known answers."""

import torch

from attacks.adra.lm import forward_difference_jacobian, levenberg_marquardt


def _exp_fit(params: torch.Tensor):
    """Fit a·exp(b·t) + c to data made with each row's own true (a, b, c): a residual per row."""
    t = torch.linspace(0, 1, 30, dtype=torch.float64)

    def residual(u: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        p = params[rows]
        target = p[:, :1] * torch.exp(p[:, 1:2] * t) + p[:, 2:]
        model = u[:, :1] * torch.exp(u[:, 1:2] * t) + u[:, 2:]
        return model - target

    return residual


def _jacobian(residual):
    return lambda u, rows, r: forward_difference_jacobian(residual, u, rows, r, step=1e-6)


def test_forward_differences_match_the_analytic_jacobian():
    params = torch.tensor([[1.0, -2.0, 0.5], [2.0, 1.0, -1.0]], dtype=torch.float64)
    residual = _exp_fit(params)
    u = torch.tensor([[0.5, -1.0, 0.0], [1.5, 0.5, 0.2]], dtype=torch.float64)
    rows = torch.arange(2)
    jac = forward_difference_jacobian(residual, u, rows, residual(u, rows), step=1e-7, chunk=2)
    t = torch.linspace(0, 1, 30, dtype=torch.float64)
    for i in range(2):
        a, b, _ = u[i]
        want = torch.stack([torch.exp(b * t), a * t * torch.exp(b * t), torch.ones_like(t)], 1)
        torch.testing.assert_close(jac[i], want, rtol=1e-5, atol=1e-6)


def test_every_hypothesis_converges_to_its_own_answer():
    params = torch.tensor([[1.0, -2.0, 0.5], [2.0, 1.0, -1.0], [-0.5, 0.3, 2.0]], dtype=torch.float64)
    residual = _exp_fit(params)
    u0 = params + torch.tensor([[0.5, 0.5, -0.5], [-0.5, 0.4, 0.5], [0.4, -0.3, 0.3]], dtype=torch.float64)
    res = levenberg_marquardt(residual, _jacobian(residual), u0, iterations=60, tol=1e-12, refresh=3)
    order = torch.argsort(res.rows)
    torch.testing.assert_close(res.u[order], params, rtol=1e-4, atol=1e-4)
    assert (res.cost < 1e-10).all()


def test_successive_halving_keeps_the_best_and_plateaus_stop_early():
    # one hypothesis starts at its answer, one near it, one far: the far one is dropped first
    params = torch.tensor([[1.0, -2.0, 0.5]] * 3, dtype=torch.float64)
    residual = _exp_fit(params)
    u0 = torch.tensor([[1.0, -2.0, 0.5], [1.1, -1.8, 0.4], [-3.0, 3.0, 5.0]], dtype=torch.float64)
    seen = []
    res = levenberg_marquardt(residual, _jacobian(residual), u0, iterations=50, keep={1: 2, 2: 1},
                              report=lambda it, total, best: seen.append((it, total, best)))
    assert res.rows.tolist() == [0] or res.rows.tolist() == [1]
    assert res.iterations < 50  # stopped at the plateau
    assert seen[0][1] == 50 and all(b >= 0 for _, _, b in seen)


def test_projection_keeps_points_feasible():
    # minimise (u - 2)^2 in the box [0, 1]: the answer is the corner 1
    def residual(u, rows):
        return u - 2.0

    res = levenberg_marquardt(residual, _jacobian(residual), torch.full((2, 4), 0.3, dtype=torch.float64),
                              project=lambda u: u.clamp(0.0, 1.0), iterations=20)
    torch.testing.assert_close(res.u, torch.ones_like(res.u))


def test_the_cpu_keeps_the_fixed_residual_call_budget():
    import torch

    from attacks.adra.solver import SET_BUDGET, set_budget

    assert set_budget(torch.device("cpu")) == SET_BUDGET
