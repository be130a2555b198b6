"""EquiReg: the two forms, per-row reductions, lambda schedules, MPE resolution and attachment.

References: the definitions (paper Defs. 4.1-4.2; Anima-Lab/Equireg ``equireg/penalty.py``), hand
computation, functions that are exactly equivariant by construction, and the embedded autoencoder
(whose equivariance error grows with added noise, as FIELD-NOTES measured on a smaller one).
"""
from __future__ import annotations

import pytest
import torch

from operators import build_group
from solvers import RegularizerSpec
from solvers.equireg import (EquiReg, Influence, equi, equicon, reduce_rows, resolve_mpe, schedule_factor, split_grad,
                             validate_spec)
from solvers.priors import Autoencoder, GaussianPrior, LatentPrior, VPSchedule
from solvers.rng import make_generators
from tests.support.gaussian import GaussianEps


def _x(B=3, C=2, H=4, W=4, seed=0):
    return torch.randn(B, C, H, W, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _pixel_prior(d=4):
    return GaussianPrior(torch.zeros(d), torch.eye(d), VPSchedule.linear(), shape=(1, 2, 2))


def _equivariant(x):
    """Pointwise nonlinearity then a 3x3 blur with a left-right and up-down symmetric, transpose-
    symmetric kernel: commutes with flips and 90-degree rotations (circular padding)."""
    k = torch.tensor([[1.0, 2.0, 1.0], [2.0, 4.0, 2.0], [1.0, 2.0, 1.0]], dtype=x.dtype) / 16
    C = x.shape[1]
    y = torch.nn.functional.pad(torch.tanh(x), (1, 1, 1, 1), mode="circular")
    return torch.nn.functional.conv2d(y, k.expand(C, 1, 3, 3), groups=C)


def _not_equivariant(x):
    ramp = torch.linspace(0.0, 1.0, x.shape[-1], dtype=x.dtype)
    return x * ramp


@pytest.mark.parametrize("group", ["identity", "hflip", "rot90", "hflip_rot90"])
def test_equi_is_zero_for_identity_and_equivariant_f(group):
    """Reference: Def. 4.1, ``T f(x) - f(T x) = 0`` when f commutes with T."""
    G = build_group(group, sample="all")
    x = _x()
    g = G.sample(make_generators([1, 2, 3]))
    assert torch.equal(equi(lambda v: v, G, x, g), torch.zeros(3, dtype=torch.float64))
    torch.testing.assert_close(equi(_equivariant, G, x, g), torch.zeros(3, dtype=torch.float64), atol=1e-12, rtol=0)


@pytest.mark.parametrize("group", ["hflip", "rot90", "hflip_rot90"])
def test_equicon_is_zero_for_identity_and_positive_otherwise(group):
    """Reference: Def. 4.2, ``x - T^-1 f(T x) = 0`` for f = identity; a non-equivariant f is not."""
    G = build_group(group)  # library draws: never the identity
    x = _x()
    g = G.sample(make_generators([4, 5, 6]))
    assert torch.equal(equicon(lambda v: v, G, x, g), torch.zeros(3, dtype=torch.float64))
    assert bool((equicon(_not_equivariant, G, x, g) > 0).all())
    assert bool((equi(_not_equivariant, G, x, g) > 0).all())


def test_reductions_are_per_row_and_match_hand_computation():
    """Reference: norm = sqrt(sum d^2), sqnorm = sum d^2, mse = mean d^2, each over one row; the
    library's whole-batch reduction equals these at batch 1."""
    d = _x(B=2)
    flat = d.reshape(2, -1)
    torch.testing.assert_close(reduce_rows(d, "norm"), flat.pow(2).sum(1).sqrt())
    torch.testing.assert_close(reduce_rows(d, "sqnorm"), flat.pow(2).sum(1))
    torch.testing.assert_close(reduce_rows(d, "mse"), flat.pow(2).mean(1))
    torch.testing.assert_close(reduce_rows(d[:1], "norm")[0], torch.linalg.norm(d[:1]))
    with pytest.raises(ValueError, match="allowed"):
        reduce_rows(d, "l1")


def test_schedules():
    """Reference: the schedule definitions in solvers/equireg.py (paper App. E, library
    schedules.py with the fraction rule)."""
    assert schedule_factor("constant", 7, 20) == 1.0
    assert [schedule_factor("constant", i, 20, freq=3) for i in range(6)] == [1, 0, 0, 1, 0, 0]
    cut = [schedule_factor("cutoff", i, 20) for i in range(20)]
    assert cut == [1.0] * 18 + [0.0] * 2  # last 10% of 20 steps
    assert [schedule_factor("cutoff", i, 50) for i in range(50)].count(0.0) == 5
    sched = VPSchedule.linear()
    t = torch.tensor([999, 500, 0])
    sigma = sched.sigma(t)
    torch.testing.assert_close(schedule_factor("noise_sqrt", 0, 10, sigma=sigma), (1 - sched.abar(t)).sqrt())
    torch.testing.assert_close(schedule_factor("noise_sigma", 0, 10, sigma=sigma, sigma_max=sched.sigma_max),
                               sigma / sched.sigma_max)
    with pytest.raises(ValueError, match="sigma"):
        schedule_factor("noise_sqrt", 0, 10)


def test_mpe_resolution_fits_the_space():
    """Reference: SPEC "EquiReg" (decoder takes latents, encoder images; autoencoder is D o E on
    pixels and E o D on latents; equicon needs f into x's own space)."""
    enc = lambda x: 2 * x  # noqa: E731
    dec = lambda z: z + 1  # noqa: E731
    ae = Autoencoder(enc, dec, (1, 2, 2), (1, 2, 2))
    pixel = _pixel_prior()
    x = _x(B=1, C=1, H=2, W=2)
    f = resolve_mpe(RegularizerSpec(kind="equi", mpe="autoencoder", autoencoder=ae), pixel)
    torch.testing.assert_close(f(x), 2 * x + 1)  # D(E(x))
    torch.testing.assert_close(resolve_mpe(RegularizerSpec(kind="equi", mpe="encoder", autoencoder=ae), pixel)(x), 2 * x)
    gp = _pixel_prior()
    latent = LatentPrior(GaussianEps(gp), ae, gp.schedule)
    torch.testing.assert_close(resolve_mpe(RegularizerSpec(kind="equi", mpe="autoencoder"), latent)(x), 2 * (x + 1))
    torch.testing.assert_close(resolve_mpe(RegularizerSpec(kind="equi", mpe="decoder"), latent)(x), x + 1)
    with pytest.raises(ValueError, match="pixel"):
        resolve_mpe(RegularizerSpec(kind="equi", mpe="decoder", autoencoder=ae), pixel)
    with pytest.raises(ValueError, match="latent"):
        resolve_mpe(RegularizerSpec(kind="equi", mpe="encoder"), latent)
    with pytest.raises(ValueError, match="own space"):
        resolve_mpe(RegularizerSpec(kind="equicon", mpe="decoder"), latent)
    with pytest.raises(ValueError, match="autoencoder"):
        resolve_mpe(RegularizerSpec(kind="equi", mpe="encoder"), pixel)
    with pytest.raises(ValueError, match="kind"):
        validate_spec(RegularizerSpec(kind="equivariance"), pixel)
    with pytest.raises(ValueError, match="schedule"):
        validate_spec(RegularizerSpec(kind="equi", mpe=enc, schedule="linear"), pixel)


def test_penalty_weights_rows_and_skips_when_off():
    """Reference: ``lambda_t R`` per row; lam = 0 rows give exactly 0; a step the schedule switches
    off costs no compute and no group draw (so the group stream is the same for every lambda)."""
    calls = []

    def f(x):
        calls.append(x.shape[0])
        return _not_equivariant(x)

    prior = _pixel_prior()
    x = _x(B=3, C=1, H=2, W=2)
    lam = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    reg = EquiReg(RegularizerSpec(kind="equi", mpe=f, schedule="cutoff"), prior, lam, make_generators([7, 8, 9]))
    off = reg.penalty(x, 19, 20)
    assert torch.equal(off, torch.zeros(3, dtype=torch.float64)) and calls == []
    on = reg.penalty(x, 0, 20)
    assert on[0] == 0 and on[1] > 0
    state = [g.get_state() for g in reg.generators]
    raw = EquiReg(RegularizerSpec(kind="equi", mpe=f), prior, lam, make_generators([7, 8, 9])).raw(x)
    torch.testing.assert_close(on, lam * raw)
    assert all(torch.equal(s, g.get_state()) for s, g in zip(state, reg.generators))
    xg = x.clone().requires_grad_()
    grad, = torch.autograd.grad(reg.penalty(xg, 0, 20).sum(), xg)
    assert bool((grad[0] == 0).all()) and bool((grad[2] != 0).any())


def test_split_grad_is_the_combined_gradient_and_influence_is_per_row():
    """Reference: autograd of the summed loss (the update the solvers made before the split) and the
    hand-computed per-row ratio ``||grad penalty|| / ||grad data||``; rows never applied give NaN
    (0 / 0), a lam = 0 row gives 0, and an off step (``term`` None) records nothing."""
    prior = _pixel_prior()
    lam = torch.tensor([0.0, 1.0, 2.0], dtype=torch.float64)
    reg = EquiReg(RegularizerSpec(kind="equi", mpe=_not_equivariant, schedule="cutoff"), prior, lam,
                  make_generators([1, 2, 3]))
    x = _x(B=3, C=1, H=2, W=2).requires_grad_()
    data = (x ** 3).flatten(1).sum(1)
    term = reg.term(x, 0, 20)
    both, = torch.autograd.grad((data + term.value).sum(), x, retain_graph=True)
    g_data, = torch.autograd.grad(data.sum(), x, retain_graph=True)
    g_pen, = torch.autograd.grad(term.value.sum(), x, retain_graph=True)
    meter = Influence()
    torch.testing.assert_close(split_grad(data, term, x, meter, rows=torch.tensor([True, True, False])), both)
    assert reg.term(x, 19, 20) is None
    got = meter.means(["influence_grad", "influence_obj"], 3, x.device, x.dtype)
    want = g_pen.flatten(1).norm(dim=1) / g_data.flatten(1).norm(dim=1)
    assert got["influence_grad"][0] == 0 and torch.isclose(got["influence_grad"][1], want[1])
    assert bool(torch.isnan(got["influence_grad"][2])) and bool(torch.isnan(got["influence_obj"]).all())


def test_equi_error_grows_with_noise_for_the_embedded_autoencoder():
    """Reference: the MPE property on the project's own autoencoder — the flip-equivariance error of
    D o E on validation images grows with additive noise (0 < 0.1 < 0.4), as the paper's Fig. 4a
    and FIELD-NOTES' measurement on a smaller autoencoder say. (FIELD-NOTES also found blur
    *lowers* it; that is a finding, not tested here.)"""
    try:
        from solvers.embedded.data import load_split
        from solvers.loaders import load_autoencoder

        ae = load_autoencoder({"kind": "embedded"})
        x = load_split("report", 8)
    except (FileNotFoundError, ImportError) as exc:  # weights not trained/shipped yet
        pytest.skip(f"embedded autoencoder unavailable: {exc}")
    x = x.to(torch.float32)
    G = build_group("hflip")
    g = torch.ones(x.shape[0], dtype=torch.long)
    f = lambda v: ae.decode(ae.encode(v))  # noqa: E731
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(x.shape, generator=gen)
    with torch.no_grad():
        errs = [equi(f, G, x + s * noise, g).mean().item() for s in (0.0, 0.1, 0.4)]
    assert errs[0] < errs[1] < errs[2], errs
