"""The exact law of DAPS's discretization on a Gaussian prior, and sample-vs-law checks.

On a Gaussian prior the denoiser is affine, so every piece of DAPS (Karras levels, Euler PF-ODE,
K Langevin / damped-HMC steps with the linear lr decay, re-noising) is an affine map plus
Gaussian noise; ``daps_law`` propagates the mean and covariance through them in closed form
(written from the algorithm's definition in SPEC / the DAPS repo, independently of
solvers/daps.py).
"""
from __future__ import annotations

import math

import torch

DT = torch.float64


def karras(smax, smin, n, rho=7.0):
    if n == 1:
        return [float(smax)]
    a, b = smax ** (1 / rho), smin ** (1 / rho)
    return [(a + k / (n - 1) * (b - a)) ** rho for k in range(n)]


def daps_law(mu, Sigma, A, y, *, N, K, lr, tau, smax, smin, ode_steps, ode_min, lr_min_ratio=1.0,
             algo="langevin", momentum=0.0, grid="endpoints", rho=7.0):
    """Exact (mean, cov) of DAPS's output on the Gaussian prior, for one row's lr.

    Joint affine propagation of ``u = [x; v; x0_hat]`` through the K MCMC steps of each level.
    """
    d = mu.numel()
    I, Z = torch.eye(d, dtype=DT), torch.zeros(d, d, dtype=DT)
    if grid == "official":
        sig, ratios = karras(smax, smin, N + 1, rho)[:N], [k / (N + 1) for k in range(N)]
    else:
        sig, ratios = karras(smax, smin, N, rho), [k / (N - 1) if N > 1 else 0.0 for k in range(N)]

    def W(s):  # D(x, s) = mu + W (x - mu)
        return Sigma @ torch.linalg.inv(Sigma + s ** 2 * I)

    mt, Ct = torch.zeros(d, dtype=DT), smax ** 2 * I
    for k in range(N):
        s = sig[k]
        if ode_steps > 0:
            ts, G = karras(s, ode_min, ode_steps + 1, rho), I.clone()
            for j in range(ode_steps):
                G = (I + (ts[j + 1] - ts[j]) / ts[j] * (I - W(ts[j]))) @ G
        else:
            G = W(s)
        m0, C0 = mu + G @ (mt - mu), G @ Ct @ G.T
        lrk = lr * (1 + ratios[k] * (lr_min_ratio - 1))
        P, b = 2 * A.T @ A / tau ** 2 + I / s ** 2, 2 * A.T @ y / tau ** 2  # score = -P x + b + x0_hat / s^2
        if algo == "langevin":
            Fx = torch.cat([I - lrk * P, Z, lrk / s ** 2 * I], 1)
            Fv = torch.cat([Z, Z, Z], 1)
            f = torch.cat([lrk * b, 0 * b, 0 * b])
            Gn = torch.cat([math.sqrt(2 * lrk) * I, Z, Z], 0)
            v_cov = Z
        else:
            h, c = math.sqrt(lrk), math.sqrt(2 * (1 - momentum))
            Fv = torch.cat([-h * P, momentum * I, h / s ** 2 * I], 1)
            Fx = torch.cat([I, Z, Z], 1) + h * Fv
            f = torch.cat([h * h * b, h * b, 0 * b])
            Gn = torch.cat([h * c * I, c * I, Z], 0)
            v_cov = I
        F = torch.cat([Fx, Fv, torch.cat([Z, Z, I], 1)], 0)
        um = torch.cat([m0, 0 * m0, m0])
        uC = torch.zeros(3 * d, 3 * d, dtype=DT)
        uC[:d, :d] = uC[:d, 2 * d:] = uC[2 * d:, :d] = uC[2 * d:, 2 * d:] = C0
        uC[d:2 * d, d:2 * d] = v_cov
        for _ in range(K):
            um, uC = F @ um + f, F @ uC @ F.T + Gn @ Gn.T
        mt, Ct = um[:d], uC[:d, :d]
        if k + 1 < N:
            Ct = Ct + sig[k + 1] ** 2 * I
    return mt, 0.5 * (Ct + Ct.T)


def mean_cov(out):
    xs = out.x.cpu().reshape(out.x.shape[0], -1)
    return xs.mean(0), torch.cov(xs.T)


def mahalanobis(a, b, C):
    d = a - b
    return float((d @ torch.linalg.solve(C, d)).sqrt())


def cov_rel(C, ref):
    return float((C - ref).norm() / ref.norm())


def check_against_law(xs_mean, xs_cov, n, law_m, law_C, label):
    """Sample mean/cov against an exact Gaussian law, at sampling precision.

    Mean: ``n * Mahalanobis^2 ~ chi2(4)``; bound 18.5 (its 99.9% quantile). Covariance: for
    Gaussian samples ``E ||S - C||_F^2 = (||C||_F^2 + tr(C)^2) / (n - 1)``; bound 2.5x its root
    (``||S - C||^2`` is a weighted chi-square with a few degrees of freedom: exceeding 6.25x its
    mean has probability below 1e-3 even with 3 effective degrees of freedom).
    """
    chi2 = n * mahalanobis(xs_mean, law_m, law_C) ** 2
    rms = math.sqrt((law_C.norm() ** 2 + law_C.trace() ** 2) / (n - 1))
    dev = float((xs_cov - law_C).norm())
    assert chi2 < 18.5, f"{label}: sample mean off the exact law (n*Mahalanobis^2 = {chi2:.1f})"
    assert dev < 2.5 * rms, f"{label}: sample cov off the exact law ({dev:.4f} vs bound {2.5 * rms:.4f})"
