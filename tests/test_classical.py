"""The classical baselines (``solvers/classical``), each against a reference computed another way.

Dense references are built by applying the operator (or an independent ``torch.roll`` model of
circular correlation) to the basis images of tiny (8x8 / 16x16) single-channel problems in float64
and solving the normal equations with ``torch.linalg.solve``; library references call
scikit-image directly. ``EQUIBENCH_TEST_DEVICE=cuda`` reruns the batching and embedded-task checks
on a GPU (``tests/support/gaussian.DEVICE``); the dense references stay on the CPU.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.restoration import denoise_tv_chambolle, inpaint_biharmonic
from skimage.restoration import wiener as skimage_wiener

from operators import EMBEDDED_DEFAULTS, OPERATORS, build_operator
from solvers import SOLVERS, RegularizerSpec, RowBatch, solve
from solvers.classical.common import grad, tv
from solvers.classical.tv import tv_objective
from solvers.classical.wiener import correlation_spectrum, mirror_extend, penalty_symbol, periodic_tikhonov
from solvers.embedded.data import load_split
from solvers.priors import GaussianPrior, VPSchedule
from solvers.rng import make_generators
from tests.support.gaussian import DEVICE

F64 = torch.float64
CLASSICAL = ("biharmonic", "tikhonov_sr", "tv_gd", "tv_pd", "wiener")


# ----------------------------------------------------------------------------- helpers
def _run(name, op, y, params=None, seeds=None, **options):
    seeds = list(range(y.shape[0])) if seeds is None else seeds
    return solve(name, None, RowBatch(y, op, make_generators(seeds, y.device), params or {}), 1, options=options)


def _matrix(fn, shape) -> torch.Tensor:
    """Dense matrix of the linear map ``fn`` on (1, H, W) images: column j = fn(e_j) flattened."""
    n = int(np.prod(shape))
    basis = torch.eye(n, dtype=F64).reshape(n, *shape)
    return fn(basis).reshape(n, -1).T


def _circ_correlate(u: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """``y[i, j] = sum_ab k[a, b] u[(i + a - K//2) % N, (j + b - K//2) % N]`` by rolls (no FFT)."""
    p = k.shape[-1] // 2
    return sum(k[a, b] * torch.roll(u, shifts=(p - a, p - b), dims=(-2, -1))
               for a in range(k.shape[0]) for b in range(k.shape[1]))


def _circ_grad(u: torch.Tensor) -> torch.Tensor:
    """Circular forward differences (vertical, horizontal) stacked on a new axis."""
    return torch.stack([torch.roll(u, -1, -2) - u, torch.roll(u, -1, -1) - u], dim=1)


def _solve_normal(a: torch.Tensor, d: torch.Tensor | None, w: float, rhs: torch.Tensor) -> torch.Tensor:
    m = a.T @ a + (w * d.T @ d if d is not None else w * torch.eye(a.shape[1], dtype=F64))
    return torch.linalg.solve(m, rhs)


# ----------------------------------------------------------------------------- registry
def test_registry_families_weights_and_tasks():
    """Reference: the brief of issue 12 (one weight as step_param, family, tasks, no prior)."""
    for name in CLASSICAL:
        info = SOLVERS[name]
        assert info.family == "classical" and info.space == "any" and not info.needs_prior
        assert info.tasks and all(t in EMBEDDED_DEFAULTS for t in info.tasks)
        if name == "biharmonic":
            assert info.step_param is None and info.row_params == ()
        else:
            assert info.step_param == "weight" and info.defaults["weight"] > 0
    for name in ("dps", "psld", "resample"):
        assert SOLVERS[name].family == "diffusion" and SOLVERS[name].needs_prior and SOLVERS[name].tasks is None
    assert set(SOLVERS["tv_pd"].tasks) == {n for n, cls in OPERATORS.items() if cls.linear}
    assert set(SOLVERS["tv_gd"].tasks) == {n for n, cls in OPERATORS.items() if not cls.linear}


# ----------------------------------------------------------------------------- wiener
def test_periodic_tikhonov_matches_dense_circular_solve():
    """Reference: ``(C^T C + w P^T P)^-1 C^T y`` solved densely, C the circular correlation by rolls
    (two rows, two asymmetric kernels, two weights; identity and gradient penalties)."""
    torch.manual_seed(0)
    kernels = torch.rand(2, 3, 3, dtype=F64)
    y = torch.randn(2, 1, 8, 8, dtype=F64)
    w = torch.tensor([0.05, 0.3], dtype=F64)
    for penalty, d_fn in (("identity", None), ("gradient", _circ_grad)):
        symbol = penalty_symbol(penalty, (8, 8), F64, "cpu")
        got = periodic_tikhonov(y, correlation_spectrum(kernels, (8, 8)), w, symbol)
        for i in range(2):
            c = _matrix(lambda u: _circ_correlate(u, kernels[i]), (1, 8, 8))
            d = None if d_fn is None else _matrix(d_fn, (1, 8, 8))
            ref = _solve_normal(c, d, float(w[i]), c.T @ y[i].reshape(-1))
            torch.testing.assert_close(got[i].reshape(-1), ref, rtol=1e-9, atol=1e-9)


def test_periodic_tikhonov_matches_skimage_wiener():
    """Reference: ``skimage.restoration.wiener`` (Laplacian ``reg``, ``balance`` = weight,
    ``clip=False``). skimage convolves with ``psf``, i.e. correlates with the flipped psf."""
    rng = np.random.default_rng(1)
    img = rng.standard_normal((16, 16))
    psf = rng.random((5, 5))
    psf /= psf.sum()
    ref = skimage_wiener(img, psf, balance=0.1, clip=False)
    k = torch.from_numpy(psf.copy()).flip(0, 1)[None]
    got = periodic_tikhonov(torch.from_numpy(img)[None, None], correlation_spectrum(k, (16, 16)),
                            torch.tensor([0.1], dtype=F64), penalty_symbol("laplacian", (16, 16), F64, "cpu"))
    np.testing.assert_allclose(got[0, 0].numpy(), ref, rtol=1e-9, atol=1e-9)


def test_wiener_is_exact_on_the_mirror_extended_problem():
    """Reference: the dense minimiser of ``||C E x - E y||^2 + w ||D E x||^2`` (E the mirror
    extension to 14x14 as an index map, C circular correlation by rolls, D circular differences),
    which the module docstring claims ``wiener`` computes for a mirror-symmetric (Gaussian) kernel;
    and ``(C E x)|_{8x8} = A x`` for an asymmetric (motion) kernel."""
    op = build_operator("gaussian_blur", (1, 8, 8), seeds=0, kernel_size=5, std=1.0)
    torch.manual_seed(2)
    y = torch.randn(2, 1, 8, 8, dtype=F64)
    w = [0.02, 0.2]
    got = _run("wiener", op, y, {"weight": torch.tensor(w, dtype=F64)}).x
    src = torch.tensor([i if i < 8 else 14 - i for i in range(14)])
    ext = torch.zeros(196, 64, dtype=F64)
    ext[torch.arange(196), (src[:, None] * 8 + src[None, :]).reshape(-1)] = 1
    c = _matrix(lambda u: _circ_correlate(u, op.kernels[0]), (1, 14, 14))
    d = _matrix(_circ_grad, (1, 14, 14))
    for i in range(2):
        ce = c @ ext
        m = ce.T @ ce + w[i] * (d @ ext).T @ (d @ ext)
        ref = torch.linalg.solve(m, ce.T @ (ext @ y[i].reshape(-1)))
        torch.testing.assert_close(got[i].reshape(-1), ref, rtol=1e-9, atol=1e-9)
    motion = build_operator("motion_blur", (1, 8, 8), seeds=3, kernel_size=5)
    x = torch.randn(1, 1, 8, 8, dtype=F64)
    torch.testing.assert_close(_circ_correlate(mirror_extend(x), motion.kernels[0])[..., :8, :8], motion(x))


# ----------------------------------------------------------------------------- tikhonov_sr
def test_tikhonov_sr_matches_dense_normal_equations():
    """Reference: ``x_b + (A^T A + w D^T D)^-1 A^T (y - A x_b)`` solved densely (A and D from the
    operator and ``grad`` on basis images, x_b bicubic); ``iters 0`` is bicubic exactly."""
    op = build_operator("super_resolution", (1, 8, 8), seeds=0, factor=2)
    torch.manual_seed(3)
    y = torch.randn(2, 1, 4, 4, dtype=F64)
    w = [0.05, 0.5]
    got = _run("tikhonov_sr", op, y, {"weight": torch.tensor(w, dtype=F64)}, iters=200).x
    a, d = _matrix(op.forward, (1, 8, 8)), _matrix(lambda u: grad(u)[:, 0], (1, 8, 8))
    x_b = op.naive_inverse(y)
    for i in range(2):
        e = _solve_normal(a, d, w[i], a.T @ (y[i].reshape(-1) - a @ x_b[i].reshape(-1)))
        torch.testing.assert_close(got[i].reshape(-1), x_b[i].reshape(-1) + e, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(_run("tikhonov_sr", op, y, {"weight": 0.1}, iters=0).x, x_b)


# ----------------------------------------------------------------------------- biharmonic
@pytest.mark.parametrize("task,params", [("box_inpainting", {"box_size": 6, "margin": 1}),
                                         ("random_inpainting", {"p": 0.5})])
def test_biharmonic_equals_scikit_image(task, params):
    """Reference: ``skimage.restoration.inpaint_biharmonic`` called directly on each row."""
    op = build_operator(task, (3, 16, 16), seeds=[4, 5], **params)
    torch.manual_seed(4)
    y = op(torch.rand(2, 3, 16, 16, dtype=F64) * 2 - 1)
    got = _run("biharmonic", op, y, {"step_size": 0.7}).x  # the generic step size is dropped
    for i in range(2):
        ref = inpaint_biharmonic(y[i].permute(1, 2, 0).numpy(), op.mask[i, 0].numpy() == 0, channel_axis=-1)
        np.testing.assert_allclose(got[i].permute(1, 2, 0).numpy(), ref)


# ----------------------------------------------------------------------------- tv_pd
def test_tv_pd_weight_zero_is_least_squares():
    """Reference: ``A^-1 y`` (dense solve) for a full-rank blur, weight 0, no box constraint."""
    op = build_operator("gaussian_blur", (1, 8, 8), seeds=0, kernel_size=3, std=0.6)
    torch.manual_seed(5)
    y = torch.randn(1, 1, 8, 8, dtype=F64) * 0.3
    got = _run("tv_pd", op, y, {"weight": 0.0}, iters=1500, box=False).x
    ref = torch.linalg.solve(_matrix(op.forward, (1, 8, 8)), y.reshape(-1))
    torch.testing.assert_close(got.reshape(-1), ref, rtol=1e-6, atol=1e-6)


def test_tv_pd_denoising_matches_skimage_chambolle():
    """Reference: ``skimage.restoration.denoise_tv_chambolle`` at the same weight, run to
    convergence (its fixed point minimises ``1/2 ||x - y||^2 + weight TV(x)``, module docstring of
    tv.py); the primal-dual iterate reaches it (a weight off by 2 differs by 0.12) and its objective."""
    op = build_operator("identity", (3, 16, 16), seeds=0)
    rng = np.random.default_rng(6)
    y = np.clip(np.kron(rng.random((4, 4, 3)), np.ones((4, 4, 1))) + 0.1 * rng.standard_normal((16, 16, 3)), 0, 1)
    ref = torch.from_numpy(denoise_tv_chambolle(y, weight=0.1, eps=1e-14, max_num_iter=20000, channel_axis=-1))
    yt = torch.from_numpy(y).permute(2, 0, 1)[None]
    got = _run("tv_pd", op, yt, {"weight": 0.1}, iters=2000, box=False).x
    ref = ref.permute(2, 0, 1)[None]
    torch.testing.assert_close(got, ref, rtol=0, atol=2e-3)
    energy = [float(0.5 * (v - yt).square().sum() + 0.1 * tv(v)) for v in (got, ref)]
    assert energy[0] - energy[1] < 2e-5 * energy[1]


# ----------------------------------------------------------------------------- tv_gd
def test_tv_gd_fits_a_nonlinear_operator_and_decreases_the_objective():
    """Reference: at weight 0 the minimum of ``||y - A(x)||`` on a noiseless measurement is 0 (the
    learned non-linear blur: the residual falls below 1% of ``||y||`` and 5% of where it started);
    at weight > 0 the objective at the end is below the one at the start (``iters: 0`` returns the
    start), on HDR and phase retrieval."""
    x = load_split(n=2).to(F64)
    blur = build_operator("nonlinear_blur", (3, 32, 32), seeds=[0, 1], **EMBEDDED_DEFAULTS["nonlinear_blur"])
    y = blur(x)
    start = blur.residual(_run("tv_gd", blur, y, {"weight": 0.0}, iters=0).x, y)
    fit = _run("tv_gd", blur, y, {"weight": 0.0}, iters=200)
    assert fit.status == ["ok", "ok"]
    assert bool((fit.extras["y_residual"] < torch.minimum(1e-2 * y.flatten(1).norm(dim=1), 0.05 * start)).all())
    for name in ("hdr", "phase_retrieval"):
        op = build_operator(name, (3, 32, 32), seeds=0, **EMBEDDED_DEFAULTS[name])
        y = op(x)
        w = torch.tensor([0.02, 0.05], dtype=F64)
        start = _run("tv_gd", op, y, {"weight": w}, iters=0).x
        end = _run("tv_gd", op, y, {"weight": w}, iters=30).x
        assert bool((tv_objective(op, y, end, w, 0.01) < tv_objective(op, y, start, w, 0.01)).all())


# ----------------------------------------------------------------------------- rows and refusals
@pytest.mark.parametrize("name,task,options", [
    ("wiener", "motion_blur", {}), ("tikhonov_sr", "super_resolution", {"iters": 20}),
    ("tv_pd", "random_inpainting", {"iters": 20}), ("tv_gd", "hdr", {"iters": 10}),
])
def test_per_row_weights_do_not_depend_on_batching(name, task, options):
    """Reference: each row run alone (its own operator seed, generator and weight) equals the
    same row in a batch of three with different weights (docs/CONTRACTS.md: rows never interact)."""
    torch.manual_seed(8)
    x = (torch.rand(3, 3, 16, 16, dtype=F64) * 2 - 1).to(DEVICE)
    params = {"p": 0.5} if task == "random_inpainting" else {"kernel_size": 5} if task == "motion_blur" else {}
    op = build_operator(task, (3, 16, 16), seeds=[7, 8, 9], device=DEVICE, **params)
    y = op(x)
    w = torch.tensor([0.01, 0.05, 0.2], dtype=F64, device=DEVICE)
    batched = _run(name, op, y, {"step_size": w}, seeds=[1, 2, 3], **options).x
    for i in range(3):
        alone_op = build_operator(task, (3, 16, 16), seeds=[7 + i], device=DEVICE, **params)
        alone = _run(name, alone_op, y[i:i + 1], {"step_size": w[i:i + 1]}, seeds=[1 + i], **options).x
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-9, atol=1e-9)


def test_regularizer_refused_and_prior_optional():
    """Reference: the brief of issue 12 (EquiReg applies to diffusion solvers; classical solvers
    need no prior and ignore one) and docs/CONTRACTS.md (validation before compute)."""
    op = build_operator("gaussian_blur", (3, 8, 8), seeds=0, kernel_size=3, std=1.0)
    y = torch.rand(2, 3, 8, 8, dtype=F64)
    batch = RowBatch(y, op, make_generators([0, 1]), {"lam": 0.3, "weight": 0.1})
    with pytest.raises(ValueError, match="EquiReg applies to diffusion solvers only"):
        solve("wiener", None, batch, 1, regularizer=RegularizerSpec(kind="equi"))
    plain = solve("wiener", None, batch, 1, regularizer=RegularizerSpec(kind="none"))
    prior = GaussianPrior(torch.zeros(192), torch.eye(192), VPSchedule.linear(), shape=(3, 8, 8))
    torch.testing.assert_close(solve("wiener", prior, batch, 1).x, plain.x)
    assert plain.meta["family"] == "classical" and plain.status == ["ok", "ok"]
    with pytest.raises(ValueError, match="needs a pixel prior, got None"):
        solve("dps", None, batch, 1)
    with pytest.raises(ValueError, match="weight must be >= 0"):
        solve("wiener", None, RowBatch(y, op, make_generators([0, 1]), {"weight": -1.0}), 1)
    with pytest.raises(ValueError, match="option 'penalty' must be one of"):
        solve("wiener", None, batch, 1, options={"penalty": "tv"})


@pytest.mark.parametrize("name,task", [("wiener", "super_resolution"), ("tikhonov_sr", "gaussian_blur"),
                                       ("biharmonic", "gaussian_blur"), ("tv_pd", "hdr"), ("tv_gd", "gaussian_blur")])
def test_unsupported_task_refused(name, task):
    """Reference: ``SolverInfo.tasks`` (the error names the allowed operators)."""
    op = build_operator(task, (3, 32, 32), seeds=0, **EMBEDDED_DEFAULTS[task])
    y = torch.zeros(1, *op.measurement_shape)
    allowed = rf"does not support operator '{task}'; allowed: \[.*'{SOLVERS[name].tasks[0]}'"
    with pytest.raises(ValueError, match=allowed):
        _run(name, op, y, {"weight": 0.1})


def test_every_solver_runs_on_its_embedded_tasks():
    """Reference: the embedded world (32x32 RGB in [-1, 1], ``EMBEDDED_DEFAULTS``); a non-finite
    measurement row comes back ``diverged`` through ``solve``'s status (docs/CONTRACTS.md)."""
    x = load_split(n=2)
    assert x.shape == (2, 3, 32, 32) and x.dtype == torch.float32 and -1 <= x.min() and x.max() <= 1
    x = x.to(DEVICE)
    short = {"tikhonov_sr": {"iters": 5}, "tv_pd": {"iters": 5}, "tv_gd": {"iters": 3}}
    for name in CLASSICAL:
        for task in SOLVERS[name].tasks:
            op = build_operator(task, (3, 32, 32), seeds=[0, 1], device=DEVICE, **EMBEDDED_DEFAULTS[task])
            y = op(x).detach()
            y[1, 0] = float("nan")
            out = _run(name, op, y, **short.get(name, {}))
            assert out.x.shape == x.shape and out.x.dtype == x.dtype and out.x.device == x.device, (name, task)
            assert out.status == ["ok", "diverged"], (name, task, out.status)
            assert bool(torch.isfinite(out.x[0]).all())
