"""The batched simplex QP solver against a general-purpose QP solver (cvxopt), and its edge cases."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from fmriscaling import DataError
from fmriscaling.encoding.simplex import solve_simplex_qp

cvxopt = pytest.importorskip("cvxopt")

BACKENDS = [
    "numpy",
    "torch",
    pytest.param("torch_cuda", marks=pytest.mark.gpu),
]


def _cvxopt_solve(R: np.ndarray) -> tuple[np.ndarray, float]:
    """min xᵀRx s.t. x >= 0, Σx = 1 by cvxopt's interior-point QP (½xᵀPx with P = 2R)."""
    k = R.shape[0]
    options = {"show_progress": False, "abstol": 1e-12, "reltol": 1e-12, "feastol": 1e-12}
    solution = cvxopt.solvers.qp(
        cvxopt.matrix(2.0 * R),
        cvxopt.matrix(np.zeros(k)),
        cvxopt.matrix(-np.eye(k)),
        cvxopt.matrix(np.zeros(k)),
        cvxopt.matrix(np.ones((1, k))),
        cvxopt.matrix(1.0),
        options=options,
    )
    x = np.asarray(solution["x"]).ravel()
    return x, float(x @ R @ x)


def _residual_problems(rng: np.random.Generator, n: int, k: int) -> np.ndarray:
    """Cross-products of residuals like a stack's: a shared part plus member-specific parts.

    Varied on purpose: few or many TRs (rank-deficient R when fewer TRs than members), members
    of very different quality (sparse optima) or alike (interior optima).
    """
    problems = []
    for _ in range(n):
        n_trs = int(rng.choice([max(1, k // 2), k, 4 * k, 60]))
        shared = rng.standard_normal((n_trs, 1)) * rng.uniform(0, 3)
        own = rng.standard_normal((n_trs, k)) * rng.uniform(0.01, 1.0, k) ** rng.uniform(0.5, 3)
        E = shared + own
        problems.append(E.T @ E / n_trs)
    return np.stack(problems)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("k", [2, 3, 5, 10])
def test_matches_cvxopt_on_thousands_of_random_problems(backend, k):
    """500 problems per size, 2000 in all per backend."""
    R = _residual_problems(np.random.default_rng(k), 500, k)
    result = solve_simplex_qp(R, backend=backend)
    assert (result.weights >= 0).all()
    np.testing.assert_allclose(result.weights.sum(1), 1.0, atol=1e-12)
    reference = np.array([_cvxopt_solve(r)[1] for r in R])
    # the same optimum to 1e-6, and never worse than the interior-point solution beyond rounding
    np.testing.assert_allclose(result.objective, reference, rtol=0, atol=1e-6)
    assert (result.objective <= reference + 1e-10).all()
    np.testing.assert_allclose(
        result.objective, np.einsum("vi,vij,vj->v", result.weights, R, result.weights), atol=1e-12
    )
    assert result.certified.all() and not result.fallback.any()


def test_many_problems_of_one_size_match_cvxopt_and_the_weights_too():
    rng = np.random.default_rng(2)
    R = _residual_problems(rng, 3000, 4)
    result = solve_simplex_qp(R, backend="numpy")
    for i in range(0, 3000, 3):  # 1000 problems through cvxopt
        x, objective = _cvxopt_solve(R[i])
        assert abs(result.objective[i] - objective) <= 1e-6
        if np.linalg.eigvalsh(R[i])[0] > 1e-3:  # strictly convex: the minimiser is unique
            np.testing.assert_allclose(result.weights[i], x, atol=1e-4)
    assert (result.weights >= 0).all()
    np.testing.assert_allclose(result.weights.sum(1), 1.0, atol=1e-12)


def test_gap_certifies_the_objective():
    rng = np.random.default_rng(3)
    R = _residual_problems(rng, 200, 6)
    result = solve_simplex_qp(R, backend="numpy")
    reference = np.array([_cvxopt_solve(r)[1] for r in R])
    # the Frank-Wolfe gap bounds the distance to the optimum
    assert (result.objective - reference <= result.gap + 1e-10).all()
    assert (result.gap <= 1e-8 * np.abs(R).max(axis=(1, 2))).all()


def test_one_member_gets_all_the_weight():
    R = np.array([[[2.5]], [[0.0]]])
    result = solve_simplex_qp(R, backend="numpy")
    np.testing.assert_array_equal(result.weights, [[1.0], [1.0]])
    np.testing.assert_allclose(result.objective, [2.5, 0.0])
    assert result.certified.all() and result.degenerate.all()


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_identical_members_split_their_weight_evenly(backend, rng):
    E = rng.standard_normal((50, 3))
    E[:, 1] = E[:, 0]  # members 0 and 1 are the same model: R is singular
    R = (E.T @ E / 50)[None]
    result = solve_simplex_qp(R, backend=backend)
    pair = (E[:, [0, 2]].T @ E[:, [0, 2]] / 50)[None]
    alone = solve_simplex_qp(pair, backend="numpy")
    # an even split to float32 precision on torch (its threads sum in any order), 1e-6 in numpy
    atol = 1e-6 if backend == "numpy" else 1e-5
    np.testing.assert_allclose(result.weights[0, 0], result.weights[0, 1], atol=atol)
    np.testing.assert_allclose(result.weights[0, 0] + result.weights[0, 1], alone.weights[0, 0])
    np.testing.assert_allclose(result.objective, alone.objective, atol=1e-10)
    assert result.certified.all()


def test_all_members_identical_or_a_constant_voxel_give_uniform_weights(rng):
    e = rng.standard_normal((40, 1))
    same = np.repeat(e, 4, axis=1)
    R = np.stack([same.T @ same / 40, np.zeros((4, 4))])  # identical members; a constant voxel
    result = solve_simplex_qp(R, backend="numpy")
    np.testing.assert_allclose(result.weights, 0.25)
    np.testing.assert_allclose(result.objective, [float((e.T @ e)[0, 0]) / 40, 0.0])
    assert result.degenerate.all() and result.certified.all()


def test_a_vertex_and_an_interior_optimum_are_exact():
    # member 1 is strictly better than a mix: all weight on it
    vertex = np.array([[2.0, 1.5], [1.5, 1.0]])
    # uncorrelated errors of variance 1 and 3: weights 3/4, 1/4
    interior = np.diag([1.0, 3.0])
    result = solve_simplex_qp(np.stack([vertex, interior]), backend="numpy")
    np.testing.assert_allclose(result.weights, [[0.0, 1.0], [0.75, 0.25]], atol=1e-9)
    np.testing.assert_allclose(result.objective, [1.0, 0.75], atol=1e-12)


def test_unfinished_problems_are_solved_exactly_by_the_fallback(caplog):
    rng = np.random.default_rng(4)
    R = _residual_problems(rng, 300, 6)
    full = solve_simplex_qp(R, backend="numpy")
    with caplog.at_level(logging.INFO, logger="fmriscaling.encoding.simplex"):
        cut = solve_simplex_qp(R, backend="numpy", max_iter=1, exchange_rounds=0)
    assert cut.fallback.sum() > 200 and "support enumeration" in caplog.text
    assert cut.certified.all()
    np.testing.assert_allclose(cut.objective, full.objective, atol=1e-10)
    np.testing.assert_allclose(cut.weights, full.weights, atol=1e-6)


def test_above_the_fallback_size_unfinished_problems_are_flagged_not_hidden(caplog):
    rng = np.random.default_rng(5)
    R = _residual_problems(rng, 50, 6)
    with caplog.at_level(logging.WARNING, logger="fmriscaling.encoding.simplex"):
        result = solve_simplex_qp(
            R, backend="numpy", max_iter=1, max_fallback_members=5, exchange_rounds=0
        )
    assert not result.certified.all() and "not certified" in caplog.text
    assert (result.weights >= 0).all()
    np.testing.assert_allclose(result.weights.sum(1), 1.0, atol=1e-12)


def test_non_finite_or_misshapen_input_fails_clearly():
    R = np.stack([np.eye(3), np.eye(3)])
    R[1, 0, 2] = np.nan
    with pytest.raises(DataError, match=r"1 of 2 stacking problems have non-finite.*\[1\]"):
        solve_simplex_qp(R, backend="numpy")
    with pytest.raises(ValueError, match=r"shape \(n_problems, k, k\)"):
        solve_simplex_qp(np.ones((3, 2, 3)), backend="numpy")


def test_the_caller_backend_is_left_as_it_was():
    from himalaya.backend import get_backend, set_backend

    set_backend("numpy")
    assert solve_simplex_qp(np.eye(2)[None], backend="torch").backend == "torch"
    assert get_backend().name == "numpy"


@pytest.mark.skipif(
    __import__("torch").cuda.is_available(), reason="auto picks the GPU where there is one"
)
def test_auto_solves_on_numpy_on_a_cpu():
    assert solve_simplex_qp(np.eye(2)[None]).backend == "numpy"


def test_block_exchanges_only_speed_the_active_set_up():
    R = _residual_problems(np.random.default_rng(6), 500, 8)
    fast = solve_simplex_qp(R, backend="numpy")
    plain = solve_simplex_qp(R, backend="numpy", exchange_rounds=0)
    np.testing.assert_allclose(fast.objective, plain.objective, atol=1e-12)
    np.testing.assert_allclose(fast.weights, plain.weights, atol=1e-6)
    assert fast.n_iter.mean() < plain.n_iter.mean()
