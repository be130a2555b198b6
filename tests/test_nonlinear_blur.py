"""Tests for nonlinear_blur: the bkse KernelWizard loader and the embedded world's BlurNet."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from operators import EMBEDDED_DEFAULTS, build_operator, train_blur_net
from operators.nonlinear_blur import (BKSE_FILE, DEFAULT_BLUR_NET, KernelWizard, code_kernel, load_blur_net,
                                      load_kernel_wizard, reference_blur)


pytestmark = pytest.mark.usefixtures("one_thread")


def images(n=24, size=32, seed=0):
    """Smooth random images in [-1, 1] (noise upsampled), so blurring changes them measurably."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 4, size // 4, generator=g) * 2 - 1
    return torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


# ----------------------------------------------------------------------------------------------
# bkse KernelWizard
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bkse_weights(tmp_path_factory):
    """A randomly initialised state dict of the real GOPRO_wVAE shapes (float16 on disk to halve it)."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in KernelWizard().state_dict().items()}
    pool = torch.randn(1 << 20, generator=torch.Generator().manual_seed(0)).mul_(0.02).half()
    state = {}
    for i, (k, shape) in enumerate(shapes.items()):
        n = shape.numel()
        state[k] = pool.roll(i * 7919).repeat(n // pool.numel() + 1)[:n].view(shape).clone()
    path = tmp_path_factory.mktemp("bkse") / BKSE_FILE
    torch.save(state, path)
    return path


def test_bkse_missing_file_names_it(tmp_path):
    missing = tmp_path / BKSE_FILE
    with pytest.raises(FileNotFoundError, match=BKSE_FILE):
        load_kernel_wizard(missing)
    with pytest.raises(FileNotFoundError, match=BKSE_FILE):
        build_operator("nonlinear_blur", (3, 128, 128), 0, weights=str(missing))
    with pytest.raises(FileNotFoundError, match=BKSE_FILE):  # paper default: bkse, no weights given
        build_operator("nonlinear_blur", (3, 256, 256), 0)


def test_bkse_wrong_state_dict_raises(tmp_path):
    small = KernelWizard(nf=8, front_RBs=1, back_RBs=1, kernel_dim=64, n_blocks=1)
    path = tmp_path / "small.pth"
    torch.save(small.state_dict(), path)
    with pytest.raises(ValueError, match="small.pth"):
        load_kernel_wizard(path)
    assert load_kernel_wizard(path, nf=8, front_RBs=1, back_RBs=1, kernel_dim=64, n_blocks=1) is not None
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="list.pth"):
        load_kernel_wizard(tmp_path / "list.pth")


def test_bkse_real_shapes_load_strictly_and_run(bkse_weights):
    net = load_kernel_wizard(bkse_weights)
    assert sum(p.numel() for p in net.parameters()) > 100_000_000
    assert not any(p.requires_grad for p in net.parameters()) and not net.training
    op = build_operator("nonlinear_blur", (3, 128, 128), [1, 2], weights=str(bkse_weights))
    assert op.params["model"] == "bkse" and op.params["latent_scale"] == 1.2
    assert op.codes.shape == (2, 512, 1, 1) and 0.9 < op.codes.std() < 1.5
    again = build_operator("nonlinear_blur", (3, 128, 128), [1, 2], weights=str(bkse_weights))
    assert torch.equal(again.codes, op.codes) and not torch.equal(op.codes[0], op.codes[1])
    single = build_operator("nonlinear_blur", (3, 128, 128), 2, weights=str(bkse_weights))
    assert torch.equal(single.codes[0], op.codes[1])
    assert single.net is op.net  # one cached copy of the 115 M parameters
    x = (torch.rand(1, 3, 128, 128, generator=torch.Generator().manual_seed(3)) * 2 - 1).requires_grad_(True)
    y = single(x)
    assert y.shape == x.shape and y.min() >= -1 and y.max() <= 1
    (g,) = torch.autograd.grad(single.residual(x, torch.zeros_like(y)).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    with pytest.raises(ValueError, match="multiples of 128"):
        build_operator("nonlinear_blur", (3, 32, 32), 0, weights=str(bkse_weights))


# ----------------------------------------------------------------------------------------------
# the embedded world's BlurNet
# ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blur_net(tmp_path_factory):
    path = tmp_path_factory.mktemp("blur") / "blur_net.pt"
    losses = train_blur_net(images(), path, steps=60, seed=0, batch_size=8)
    return path, losses


def test_training_reduces_the_loss(blur_net):
    path, losses = blur_net
    assert path.is_file()
    assert losses["steps"] == 60 and losses["last"] < 0.5 * losses["first"]
    assert sum(p.numel() for p in load_blur_net(path).parameters()) < 10_000


def test_training_is_seeded(tmp_path):
    a = train_blur_net(images(8), tmp_path / "a.pt", steps=3, seed=5)
    b = train_blur_net(images(8), tmp_path / "b.pt", steps=3, seed=5)
    assert a["history"] == b["history"]
    with pytest.raises(ValueError):
        train_blur_net(torch.zeros(4, 1, 32, 32), tmp_path / "c.pt", steps=2)


def test_blur_net_operator(blur_net):
    path, _ = blur_net
    params = {**EMBEDDED_DEFAULTS["nonlinear_blur"], "weights": str(path)}
    op = build_operator("nonlinear_blur", (3, 32, 32), [4, 5, 6], **params)
    assert not op.linear and not op.has_transpose and op.codes.shape == (3, 4)
    x = images(3, seed=1)
    y = op(x)
    assert y.shape == x.shape and torch.equal(y, build_operator("nonlinear_blur", (3, 32, 32), [4, 5, 6], **params)(x))
    assert not torch.allclose(y[0], op(x[[1, 0, 2]])[1])  # different seeds, different blurs
    single = build_operator("nonlinear_blur", (3, 32, 32), 5, **params)
    assert torch.allclose(single(x[1:2]), y[1:2], atol=1e-6)  # row i = the batch-1 operator of seed i
    assert torch.equal(op.naive_inverse(y), y)
    with pytest.raises(NotImplementedError):
        op.transpose(y)
    # a blur, and not a linear one
    assert (y - x).abs().mean() > 0.01
    a, b = images(3, seed=2) * 0.4, images(3, seed=3) * 0.4
    assert (op(a + b) - op(a) - op(b)).abs().max() > 1e-3


def test_blur_net_gradients(blur_net):
    path, _ = blur_net
    op = build_operator("nonlinear_blur", (3, 6, 6), 1, model="blur_net", weights=str(path))
    x = (images(1, size=8, seed=4)[..., :6, :6] * 0.3).double().requires_grad_(True)
    assert torch.autograd.gradcheck(op, (x,), eps=1e-6, atol=1e-5)


def test_blur_net_files(tmp_path, blur_net):
    missing = tmp_path / "nowhere" / "blur_net.pt"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build_operator("nonlinear_blur", (3, 32, 32), 0, model="blur_net", weights=str(missing))
    bad = tmp_path / "bad.pt"
    torch.save({"format": "something else"}, bad)
    with pytest.raises(ValueError, match="bad.pt"):
        load_blur_net(bad)
    ckpt = torch.load(blur_net[0], weights_only=True)
    ckpt["config"]["hidden"] = 7
    torch.save(ckpt, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="mismatch.pt"):
        load_blur_net(tmp_path / "mismatch.pt")
    assert DEFAULT_BLUR_NET == Path(__file__).resolve().parent.parent / "solvers/embedded/weights/blur/blur_net.pt"
    if not DEFAULT_BLUR_NET.is_file():
        with pytest.raises(FileNotFoundError, match="blur_net.pt"):
            build_operator("nonlinear_blur", (3, 32, 32), 0, **EMBEDDED_DEFAULTS["nonlinear_blur"])


def test_training_target():
    code = torch.randn(5, 4, generator=torch.Generator().manual_seed(0))
    k = code_kernel(code, 9)
    assert k.shape == (5, 9, 9) and (k >= 0).all() and torch.allclose(k.sum((1, 2)), torch.ones(5))
    assert not torch.allclose(k[0], k[1])
    x = (images(5) + 1) / 2
    y = reference_blur(x, code)
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    # linear light: blurring then mapping back is not the plain blur of the image
    from operators.blur import blur_reflect
    assert (y - blur_reflect(x, k)).abs().max() > 1e-3
