"""Tests for the linear and analytic operators, `build_operator`, the registry and `add_noise`.

Tiny images throughout; the learned operator (nonlinear_blur) has its own file.
"""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.ndimage
import torch

from operators import EMBEDDED_DEFAULTS, OPERATORS, Operator, add_noise, build_operator
from operators.blur import gaussian_kernel, motion_kernel, reflect_pad, reflect_pad_adjoint, sample_motion_path
from operators.super_resolution import imresize, resize_matrix

LINEAR = ["identity", "box_inpainting", "random_inpainting", "gaussian_blur", "motion_blur", "super_resolution"]
ANALYTIC = LINEAR + ["phase_retrieval", "hdr"]
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


pytestmark = pytest.mark.usefixtures("one_thread")


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2 - 1


def small(name: str, shape=(3, 16, 16), seeds=0, **params) -> Operator:
    """The operator at a small size with parameters that fit it."""
    fit = {"box_inpainting": {"box_size": 6, "margin": 2}, "gaussian_blur": {"kernel_size": 7, "std": 1.2},
           "motion_blur": {"kernel_size": 7}, "super_resolution": {"factor": 2}}
    return build_operator(name, shape, seeds, **{**fit.get(name, {}), **params})


# ----------------------------------------------------------------------------------------------
# registry and parameters
# ----------------------------------------------------------------------------------------------


def test_registry_names():
    assert set(OPERATORS) == {"box_inpainting", "random_inpainting", "gaussian_blur", "motion_blur",
                              "super_resolution", "phase_retrieval", "hdr", "nonlinear_blur", "identity"}
    assert set(EMBEDDED_DEFAULTS) == set(OPERATORS)
    with pytest.raises(ValueError, match="allowed.*box_inpainting"):
        build_operator("deblur", (3, 32, 32))


@pytest.mark.parametrize("name,params,match", [
    ("gaussian_blur", {"sigma": 2.0}, "allowed.*kernel_size.*std"),
    ("gaussian_blur", {"kernel_size": 8}, "odd"),
    ("gaussian_blur", {"std": -1.0}, "std"),
    ("random_inpainting", {"p": 1.5}, "'p'"),
    ("random_inpainting", {"p_range": [0.7, 0.3]}, "p_range"),
    ("box_inpainting", {"box_size": 30}, "box_size"),
    ("motion_blur", {"intensity": 2}, "intensity"),
    ("phase_retrieval", {"input_range": "zero_one"}, r"\['signed', 'unit'\]"),
    ("super_resolution", {"factor": 0.5}, "factor"),
    ("super_resolution", {"antialias": "yes"}, "antialias"),
    ("hdr", {"scale": "2"}, "scale"),
    ("nonlinear_blur", {"model": "gopro"}, r"\['bkse', 'blur_net'\]"),
])
def test_bad_params_raise(name, params, match):
    with pytest.raises(ValueError, match=match):
        build_operator(name, (3, 32, 32), 0, **params)


def test_bad_seeds_and_shapes_raise():
    with pytest.raises(ValueError):
        build_operator("identity", (3, 32), 0)
    with pytest.raises(ValueError):
        build_operator("identity", (3, 32, 32), [])
    op = build_operator("identity", (3, 8, 8), [1, 2])
    with pytest.raises(ValueError, match="2 rows"):
        op(torch.zeros(3, 3, 8, 8))
    with pytest.raises(ValueError, match="shape"):
        op(torch.zeros(2, 3, 9, 8))


def test_paper_defaults_and_scaling():
    at256 = {n: build_operator(n, (3, 256, 256)).params for n in ANALYTIC}
    assert at256["box_inpainting"] == {"box_size": 128, "margin": 16}
    assert at256["random_inpainting"]["p"] == 0.7
    assert at256["gaussian_blur"] == {"kernel_size": 61, "std": 3.0}
    assert at256["motion_blur"] == {"kernel_size": 61, "intensity": 0.5}
    assert at256["super_resolution"]["factor"] == 4
    assert at256["phase_retrieval"] == {"oversample": 2.0, "input_range": "signed"}
    assert at256["hdr"] == {"scale": 2.0}
    assert build_operator("phase_retrieval", (3, 256, 256)).measurement_shape == (3, 384, 384)
    at64 = {n: build_operator(n, (3, 64, 64)).params for n in ("box_inpainting", "gaussian_blur")}
    assert at64["box_inpainting"] == {"box_size": 32, "margin": 4}
    assert at64["gaussian_blur"] == {"kernel_size": 17, "std": 0.75}  # radius 30 * 64 / 256 = 7.5 -> 8
    for params in at256.values():
        json.dumps(params)


@pytest.mark.parametrize("name", ANALYTIC)
def test_embedded_defaults_build_at_32(name):
    op = build_operator(name, (3, 32, 32), [3, 4], **EMBEDDED_DEFAULTS[name])
    y = op(rand(2, 3, 32, 32, dtype=torch.float32))
    assert tuple(y.shape[1:]) == op.measurement_shape
    assert op.batch == 2 and op.seeds == [3, 4]
    json.dumps(op.params)


def test_embedded_defaults_values():
    assert EMBEDDED_DEFAULTS["box_inpainting"] == {"box_size": 16, "margin": 2}
    assert EMBEDDED_DEFAULTS["random_inpainting"] == {"p": 0.7}
    assert EMBEDDED_DEFAULTS["gaussian_blur"] == {"kernel_size": 13, "std": 1.5}
    assert EMBEDDED_DEFAULTS["motion_blur"] == {"kernel_size": 9, "intensity": 0.5}
    assert EMBEDDED_DEFAULTS["super_resolution"] == {"factor": 2}
    assert EMBEDDED_DEFAULTS["phase_retrieval"] == {"oversample": 2.0}
    assert EMBEDDED_DEFAULTS["hdr"] == {"scale": 2.0}
    assert build_operator("super_resolution", (3, 32, 32), **EMBEDDED_DEFAULTS["super_resolution"]).measurement_shape == (3, 16, 16)


# ----------------------------------------------------------------------------------------------
# linear structure: adjoints, transposes, pseudo-inverses
# ----------------------------------------------------------------------------------------------


def _adjoint_gap(op: Operator, b: int, seed: int = 0) -> float:
    x = rand(b, *op.image_shape, seed=seed)
    y = rand(b, *op.measurement_shape, seed=seed + 1)
    lhs = (op(x) * y).sum().item()
    rhs = (x * op.transpose(y)).sum().item()
    return abs(lhs - rhs) / abs(lhs)


@pytest.mark.parametrize("name", LINEAR)
@pytest.mark.parametrize("seeds,b", [(0, 1), (5, 3), ([1, 2, 3], 3)])
def test_adjointness(name, seeds, b):
    op = small(name, seeds=seeds)
    assert op.linear and op.has_transpose
    assert _adjoint_gap(op, b) < 1e-6


@pytest.mark.parametrize("name,shape,params", [
    ("super_resolution", (3, 30, 30), {"factor": 4}),      # output ceil(30/4) = 8: not divisible
    ("super_resolution", (2, 12, 20), {"factor": 3}),
    ("super_resolution", (3, 16, 16), {"factor": 2, "antialias": False}),
    ("gaussian_blur", (3, 6, 6), {"kernel_size": 13, "std": 2.0}),  # padding beyond the image
    ("motion_blur", (1, 5, 9), {"kernel_size": 9}),
])
def test_adjointness_edge_cases(name, shape, params):
    assert _adjoint_gap(build_operator(name, shape, [7, 8], **params), 2) < 1e-6


def _dense(fn, in_shape):
    """The matrix of a linear map on one image by applying it to the standard basis."""
    n = int(np.prod(in_shape))
    basis = torch.eye(n, dtype=torch.float64).view(n, *in_shape)
    return fn(basis).reshape(n, -1).T


def test_blur_adjoint_is_dense_transpose_not_plain_blur():
    op = build_operator("motion_blur", (1, 7, 7), 11, kernel_size=5)
    a = _dense(op, (1, 7, 7))
    at = _dense(lambda y: op.transpose(y), (1, 7, 7))
    assert torch.allclose(at, a.T, atol=1e-13)
    # a plain correlation with the flipped kernel (zero padding) misses the folded margins
    k = op.kernels[0].flip(0, 1)
    plain = _dense(lambda y: torch.nn.functional.conv2d(y, k[None, None], padding=2), (1, 7, 7))
    assert (plain - a.T).abs().max() > 1e-3


def test_reflect_pad_adjoint_matches_autograd():
    x = rand(2, 3, 5, 4).requires_grad_(True)
    for pad in (1, 3, 6):
        z = rand(2, 3, 5 + 2 * pad, 4 + 2 * pad, seed=pad)
        (g,) = torch.autograd.grad((reflect_pad(x, pad) * z).sum(), x)
        assert torch.allclose(g, reflect_pad_adjoint(z, pad), atol=1e-12)
    assert torch.equal(reflect_pad(x, 2), torch.nn.functional.pad(x, (2, 2, 2, 2), mode="reflect"))


@pytest.mark.parametrize("name", LINEAR)
def test_official_transpose(name):
    op = small(name, seeds=[1, 2])
    y = rand(2, *op.measurement_shape)
    official = op.transpose(y, kind="official")
    assert official.shape == (2, *op.image_shape)
    expected = {
        "identity": lambda: y, "gaussian_blur": lambda: y, "motion_blur": lambda: y,
        "box_inpainting": lambda: y * op.mask, "random_inpainting": lambda: y * op.mask,
        "super_resolution": lambda: y.repeat_interleave(2, -2).repeat_interleave(2, -1),
    }[name]()
    assert torch.allclose(official, expected)
    with pytest.raises(ValueError, match="adjoint"):
        op.transpose(y, kind="pinv")


@pytest.mark.parametrize("name", ["phase_retrieval", "hdr"])
def test_nonlinear_have_no_transpose(name):
    op = small(name)
    assert not op.linear and not op.has_transpose
    with pytest.raises(NotImplementedError):
        op.transpose(rand(1, *op.measurement_shape))
    with pytest.raises(NotImplementedError):
        op.pseudo_inverse(rand(1, *op.measurement_shape))


@pytest.mark.parametrize("name", ["identity", "box_inpainting", "random_inpainting", "super_resolution"])
def test_pseudo_inverse(name):
    op = small(name, seeds=[1, 2])
    x = rand(2, *op.image_shape)
    y = op(x)
    xp = op.pseudo_inverse(y)
    assert torch.allclose(op(xp), y, atol=1e-10)          # A A^+ A = A
    assert torch.allclose(op.pseudo_inverse(op(xp)), xp, atol=1e-10)  # A^+ A A^+ = A^+


def test_blur_has_no_cheap_pseudo_inverse():
    with pytest.raises(NotImplementedError):
        small("gaussian_blur").pseudo_inverse(rand(1, 3, 16, 16))


# ----------------------------------------------------------------------------------------------
# blur kernels
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("size,std", [(61, 3.0), (13, 1.5), (7, 3.0), (9, 0.375)])
def test_gaussian_kernel_matches_scipy(size, std):
    delta = np.zeros((size, size))
    delta[size // 2, size // 2] = 1
    ref = scipy.ndimage.gaussian_filter(delta, sigma=std)
    assert np.allclose(gaussian_kernel(size, std).numpy(), ref, atol=1e-15)


@pytest.mark.parametrize("name", ["gaussian_blur", "motion_blur"])
def test_delta_returns_flipped_kernel(name):
    op = build_operator(name, (3, 32, 32), [4, 9], **EMBEDDED_DEFAULTS[name])
    k = op.params["kernel_size"]
    x = torch.zeros(2, 3, 32, 32, dtype=torch.float64)
    x[:, :, 16, 16] = 1
    y = op(x)
    r = k // 2
    for i in range(2):
        patch = y[i, :, 16 - r:16 + r + 1, 16 - r:16 + r + 1]
        assert torch.allclose(patch, op.kernels[i].flip(0, 1).expand(3, k, k), atol=1e-14)
        assert abs(y[i].sum().item() - 3.0) < 1e-12  # nothing leaked elsewhere
    if name == "motion_blur":  # motion kernels are not symmetric, so the flip matters
        assert not torch.allclose(op.kernels[0], op.kernels[0].flip(0, 1))


def test_motion_kernels_are_seeded_normalised_and_centred():
    a = build_operator("motion_blur", (3, 32, 32), [1, 2, 3], **EMBEDDED_DEFAULTS["motion_blur"]).kernels
    b = build_operator("motion_blur", (3, 32, 32), [1, 2, 3], **EMBEDDED_DEFAULTS["motion_blur"]).kernels
    assert torch.equal(a, b)
    assert not torch.allclose(a[0], a[1]) and not torch.allclose(a[1], a[2])
    assert (a >= 0).all() and torch.allclose(a.sum(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    grid = torch.arange(9, dtype=torch.float64) - 4
    for k in a:
        assert abs((k.sum(1) * grid).sum()) < 2 and abs((k.sum(0) * grid).sum()) < 2
    k61 = motion_kernel(61, 0.5, torch.Generator().manual_seed(0))
    assert k61.shape == (61, 61) and abs(k61.sum().item() - 1) < 1e-12


def test_motion_path_statistics():
    """The distributions of motionblur.Kernel's path sampler (LeviBorodenko/motionblur)."""
    size, intensity, n = 61, 0.5, 300
    paths = [sample_motion_path(size, intensity, torch.Generator().manual_seed(s)) for s in range(n)]
    diag = paths[0]["diagonal"]
    assert diag == pytest.approx(math.sqrt(2) * 2 * size)
    rel_len = np.array([p["max_len"] / diag for p in paths])  # 0.75 * (U(0,1) + U(0, I^2))
    mean, sd = 0.75 * (0.5 + intensity ** 2 / 2), 0.75 * math.sqrt(1 / 12 + intensity ** 4 / 12)
    assert abs(rel_len.mean() - mean) < 4 * sd / math.sqrt(n)
    jitter = np.array([p["jitter"] for p in paths])  # Beta(2, 20)
    assert abs(jitter.mean() - 2 / 22) < 4 * math.sqrt(2 * 20 / (22 ** 2 * 23)) / math.sqrt(n)
    max_angle = np.array([p["max_angle"] for p in paths])  # U(0, I pi)
    assert max_angle.max() <= intensity * math.pi
    assert abs(max_angle.mean() - intensity * math.pi / 2) < 4 * intensity * math.pi / math.sqrt(12 * n)
    steps = torch.cat([p["steps"] for p in paths]) / diag  # Beta(1, 30) * (1 - I + 0.1), truncated
    assert abs(steps.mean().item() - (1 - intensity + 0.1) / 31) < 0.1 * (1 - intensity + 0.1) / 31
    for p in paths:
        assert (p["steps"] < p["max_len"]).all() and p["steps"].sum() >= p["max_len"]
        assert abs(p["angles"][0]) <= p["max_angle"] and (p["angles"].abs() <= p["max_angle"] + 0.1).all()
        com = p["path"].mean(0)
        assert torch.allclose(com, torch.full((2,), (2 * size - 1) / 2, dtype=torch.float64))
    straight = sample_motion_path(size, 0.0, torch.Generator().manual_seed(1))
    assert (straight["angles"] == 0).all()


# ----------------------------------------------------------------------------------------------
# masks
# ----------------------------------------------------------------------------------------------


def test_random_inpainting_drops_exact_count():
    h = w = 32
    op = build_operator("random_inpainting", (3, h, w), list(range(4)), p=0.7)
    dropped = (op.mask == 0).flatten(1).sum(1)
    assert (dropped == int(h * w * 0.7)).all()
    assert op.mask.shape == (4, 1, h, w)  # one mask for all channels
    x = rand(4, 3, h, w)
    assert ((op(x) == 0) == (op.mask == 0).expand(4, 3, h, w)).all()
    ranged = build_operator("random_inpainting", (3, h, w), list(range(6)), p_range=[0.3, 0.7])
    counts = (ranged.mask == 0).flatten(1).sum(1).tolist()
    assert counts == [int(h * w * p) for p in ranged.drop_fraction]
    assert all(0.3 <= p <= 0.7 for p in ranged.drop_fraction) and len(set(counts)) > 1


def test_box_inpainting_hole():
    op = build_operator("box_inpainting", (3, 32, 32), list(range(20)), **EMBEDDED_DEFAULTS["box_inpainting"])
    tops = set()
    for m in op.mask[:, 0]:
        rows, cols = torch.nonzero(m == 0, as_tuple=True)
        assert len(rows) == 16 * 16
        top, left = rows.min().item(), cols.min().item()
        assert 2 <= top < 14 and 2 <= left < 14 and rows.max() - top == 15
        tops.add((top, left))
    assert len(tops) > 5


@pytest.mark.parametrize("name", ["box_inpainting", "random_inpainting", "motion_blur"])
def test_seeds_reproduce_and_rows_are_independent(name):
    key = "kernels" if name == "motion_blur" else "mask"
    a = small(name, seeds=[10, 11, 12])
    b = small(name, seeds=[10, 11, 12])
    assert torch.equal(getattr(a, key), getattr(b, key))
    assert not torch.equal(getattr(a, key)[0], getattr(a, key)[1])
    x = rand(3, 3, 16, 16)
    full = a(x)
    for i, s in enumerate([10, 11, 12]):  # row i of a stacked operator = the batch-1 operator of seed i
        single = small(name, seeds=s)
        assert torch.equal(getattr(single, key)[0], getattr(a, key)[i])
        assert torch.allclose(single(x[i:i + 1]), full[i:i + 1])


# ----------------------------------------------------------------------------------------------
# super-resolution
# ----------------------------------------------------------------------------------------------


def _matlab_imresize_weights(n_in: int, n_out: int, scale: float) -> np.ndarray:
    """MATLAB imresize's contributions(), written out per output pixel (1-based as in MATLAB)."""

    def cubic(t):
        t = abs(t)
        if t <= 1:
            return 1.5 * t ** 3 - 2.5 * t ** 2 + 1
        if t <= 2:
            return -0.5 * t ** 3 + 2.5 * t ** 2 - 4 * t + 2
        return 0.0

    width = 4.0 / scale if scale < 1 else 4.0
    h = (lambda t: scale * cubic(scale * t)) if scale < 1 else cubic
    mat = np.zeros((n_out, n_in))
    for i in range(1, n_out + 1):
        u = i / scale + 0.5 * (1 - 1 / scale)
        left = math.floor(u - width / 2)
        taps = [left + j for j in range(int(math.ceil(width)) + 2)]
        ws = np.array([h(u - t) for t in taps])
        ws /= ws.sum()
        for t, wt in zip(taps, ws):
            j = t - 1
            while not 0 <= j < n_in:  # MATLAB's aux = [1:n, n:-1:1] mirror
                j = -j - 1 if j < 0 else 2 * n_in - 1 - j
            mat[i - 1, j] += wt
    return mat


@pytest.mark.parametrize("n_in,scale", [(32, 0.5), (32, 0.25), (24, 1 / 3), (16, 2.0), (8, 4.0)])
def test_bicubic_matches_matlab_weights(n_in, scale):
    n_out = int(round(n_in * scale))
    ref = _matlab_imresize_weights(n_in, n_out, scale)
    assert np.allclose(resize_matrix(n_in, n_out, scale).numpy(), ref, atol=1e-12)


def test_bicubic_known_values():
    """Values produced by the official Resizer (DPS util/resizer.py) on c^2 ramps."""
    ramp = (torch.arange(8, dtype=torch.float64) ** 2).expand(1, 1, 8, 8)
    assert torch.allclose(imresize(ramp, 0.5)[0, 0, 0], torch.tensor([0.30078125, 6.26171875, 20.42578125, 43.01171875],
                                                                     dtype=torch.float64), atol=1e-5)
    ramp = (torch.arange(12, dtype=torch.float64) ** 2).expand(1, 1, 12, 12)
    assert torch.allclose(imresize(ramp, 0.25)[0, 0, 0], torch.tensor([2.39013671875, 30.63671875, 93.47314453125],
                                                                      dtype=torch.float64), atol=1e-5)


def test_super_resolution_constant_and_naive_inverse():
    op = build_operator("super_resolution", (3, 32, 32), 0, factor=4)
    x = torch.full((2, 3, 32, 32), 0.3, dtype=torch.float64)
    y = op(x)
    assert y.shape == (2, 3, 8, 8) and torch.allclose(y, torch.full_like(y, 0.3), atol=1e-12)
    up = op.naive_inverse(y)
    assert up.shape == x.shape and torch.allclose(up, x, atol=1e-12)
    smooth = torch.linspace(-1, 1, 32, dtype=torch.float64).expand(1, 3, 32, 32)
    assert (op.naive_inverse(op(smooth)) - smooth).abs().mean() < 0.05


# ----------------------------------------------------------------------------------------------
# phase retrieval, HDR, identity
# ----------------------------------------------------------------------------------------------


def test_phase_retrieval_matches_numpy():
    op = build_operator("phase_retrieval", (3, 16, 16), 0)
    assert op.measurement_shape == (3, 24, 24)
    x = rand(2, 3, 16, 16)
    xp = np.pad(x.numpy(), ((0, 0), (0, 0), (4, 4), (4, 4)))
    ref = np.abs(np.fft.fftshift(np.fft.fft2(np.fft.ifftshift(xp, axes=(-2, -1)), norm="ortho"), axes=(-2, -1)))
    assert np.allclose(op(x).numpy(), ref, atol=1e-12)
    unit = build_operator("phase_retrieval", (3, 16, 16), 0, input_range="unit")
    assert torch.allclose(unit(x), op((x + 1) / 2))
    # Parseval: the amplitude carries the image's energy
    assert torch.allclose((op(x) ** 2).sum((-2, -1)), (x ** 2).sum((-2, -1)))


def test_phase_retrieval_naive_inverse_recovers_the_mean():
    x = rand(2, 3, 16, 16) * 0.5 + 0.2
    for rng in ("unit", "signed"):
        op = build_operator("phase_retrieval", (3, 16, 16), 0, input_range=rng)
        est = op.naive_inverse(op(x))
        assert est.shape == x.shape
        assert torch.allclose(est.mean((-2, -1)), x.mean((-2, -1)), atol=1e-12)


def test_hdr_and_identity():
    x = rand(2, 3, 8, 8)
    hdr = build_operator("hdr", (3, 8, 8), 0)
    assert torch.equal(hdr(x), (2 * x).clamp(-1, 1))
    small_x = x * 0.4
    assert torch.allclose(hdr.naive_inverse(hdr(small_x)), small_x)
    ident = build_operator("identity", (3, 8, 8), 0)
    assert torch.equal(ident(x), x) and torch.equal(ident.naive_inverse(x), x)


@pytest.mark.parametrize("name", ["identity", "box_inpainting", "random_inpainting", "gaussian_blur", "motion_blur"])
def test_naive_inverse_baselines(name):
    op = small(name, seeds=[1, 2])
    y = rand(2, *op.measurement_shape)
    expected = op.transpose(y) if "inpainting" in name else y
    assert torch.equal(op.naive_inverse(y), expected)


# ----------------------------------------------------------------------------------------------
# residuals, gradients, devices
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ANALYTIC)
def test_residual_and_gradients(name):
    op = small(name, seeds=[1, 2])
    x = rand(2, *op.image_shape).mul(0.4).requires_grad_(True)
    y = rand(2, *op.measurement_shape, seed=3)
    r = op.residual(x, y)
    assert r.shape == (2,)
    assert torch.allclose(r, (y - op(x)).flatten(1).norm(dim=1))
    (g,) = torch.autograd.grad(r.sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    # rows do not interact: row 0's residual has no gradient in row 1
    (g0,) = torch.autograd.grad(op.residual(x, y)[0], x)
    assert g0[1].abs().max() == 0


@pytest.mark.parametrize("name,params", [
    ("gaussian_blur", {"kernel_size": 5, "std": 1.0}),
    ("motion_blur", {"kernel_size": 5}),
    ("super_resolution", {"factor": 2}),
    ("phase_retrieval", {}),
    ("phase_retrieval", {"input_range": "unit"}),
])
def test_gradcheck(name, params):
    op = build_operator(name, (2, 6, 6), [1, 2], **params)
    x = rand(2, 2, 6, 6, seed=4).requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-6)
    if op.linear:
        y = rand(2, *op.measurement_shape, seed=5).requires_grad_(True)
        assert torch.autograd.gradcheck(op.transpose, (y,), eps=1e-6, atol=1e-6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", ANALYTIC)
def test_devices_and_dtypes(name, device):
    cpu = small(name, seeds=[1, 2])
    op = small(name, seeds=[1, 2], device=device)
    assert op.device.type == device
    x = rand(2, *op.image_shape, dtype=torch.float32)
    y = op(x.to(device))
    assert y.device.type == device and y.dtype == torch.float32
    assert torch.allclose(y.cpu(), cpu(x), atol=1e-5)
    assert cpu.to(device) is cpu
    if op.linear:
        assert op.transpose(y).device.type == device
    assert op.naive_inverse(y).shape[1:] == op.image_shape


# ----------------------------------------------------------------------------------------------
# noise
# ----------------------------------------------------------------------------------------------


def _gens(*seeds):
    return [torch.Generator().manual_seed(s) for s in seeds]


def test_add_noise_per_row():
    y = torch.zeros(3, 3, 8, 8)
    full = add_noise(y, 0.05, _gens(1, 2, 3))
    alone = add_noise(y[1:2], 0.05, _gens(2))
    assert torch.equal(full[1:2], alone)
    assert abs(full.std().item() - 0.05) < 0.01
    per_row = add_noise(y, torch.tensor([0.0, 1.0, 2.0]), _gens(1, 2, 3))
    assert per_row[0].abs().max() == 0
    assert torch.allclose(per_row[2], 2 * add_noise(y[2:3], 1.0, _gens(3))[0])
    with pytest.raises(ValueError):
        add_noise(y, 0.05, _gens(1, 2))
