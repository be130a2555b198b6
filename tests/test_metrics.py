"""Metrics: agreement with scikit-image, the network code paths with random backbones, and the
missing-weights behaviour (None + one warning naming the file).

Random backbones are written to temporary files and read back through the same path-resolution
and loading code real weights take. The Inception test shrinks torch-fidelity's resize target from
299 to 75 px (Inception-v3's minimum) so that it runs in seconds on 2 shared cores; everything else
on that path (uint8 quantisation, the extractor's own resize, 2048-d pool features, FID/KID) is
unchanged.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from orchestrator import metrics as M

skm = pytest.importorskip("skimage.metrics")


@pytest.fixture(autouse=True)
def _no_weight_caches(tmp_path, monkeypatch):
    """Each test sees an empty torch hub cache and no $EQUIBENCH_WEIGHTS unless it sets them."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(M.WEIGHTS_ENV, raising=False)


def _pairs(seed=0, shape=(4, 3, 32, 40)):
    rng = np.random.default_rng(seed)
    a = rng.random(shape)
    # structured content (smooth ramps + noise) so SSIM is far from both 0 and 1
    yy, xx = np.meshgrid(np.linspace(0, 1, shape[2]), np.linspace(0, 1, shape[3]), indexing="ij")
    a = 0.2 * a + 0.7 * (yy * xx)[None, None]
    b = np.clip(a + rng.normal(0, 0.08, shape), 0, 1)
    return a, b


# --------------------------------------------------------------------------- PSNR / SSIM
@pytest.mark.parametrize("shape", [(4, 3, 32, 40), (3, 1, 25, 25)])
def test_psnr_ssim_match_scikit_image(shape):
    a, b = _pairs(1, shape)
    ta, tb = torch.tensor(a), torch.tensor(b)
    p = M.psnr(tb, ta, value_range=(0, 1))
    s = M.ssim(tb, ta, value_range=(0, 1))
    assert p.shape == s.shape == (shape[0],)
    for i in range(shape[0]):
        ref_p = skm.peak_signal_noise_ratio(a[i], b[i], data_range=1)
        ref_s = skm.structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5,
                                          use_sample_covariance=False, data_range=1, channel_axis=0)
        assert abs(p[i].item() - ref_p) < 1e-4
        assert abs(s[i].item() - ref_s) < 1e-4
        assert 0.05 < ref_s < 0.95  # a non-trivial comparison


def test_minus_one_one_inputs_are_mapped_and_float32_agrees():
    a, b = _pairs(2)
    ta, tb = torch.tensor(a), torch.tensor(b)
    for fn in (M.psnr, M.ssim):
        ref = fn(tb, ta, value_range=(0, 1))
        mapped = fn((tb * 2 - 1).float(), (ta * 2 - 1).float())  # default range (-1, 1), float32 input
        assert torch.allclose(mapped, ref, atol=1e-4)


def test_identical_images_and_clamping():
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert torch.isinf(M.psnr(x, x)).all()
    assert torch.allclose(M.ssim(x, x), torch.ones(2, dtype=torch.float64))
    # values beyond the range are scored as the clamped (saved) image
    over, top = torch.full((1, 3, 16, 16), 2.5), torch.ones(1, 3, 16, 16)
    assert torch.isinf(M.psnr(over, top)).all() and M.ssim(over, top).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 11x11"):
        M.ssim(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8))
    with pytest.raises(ValueError, match="one shape"):
        M.psnr(torch.zeros(1, 3, 8, 8), torch.zeros(1, 3, 8, 9))


def test_rel_l2_and_y_residual():
    x = torch.randn(3, 1, 4, 4)
    err = torch.randn(3, 1, 4, 4)
    r = M.rel_l2(x + err, x)
    assert torch.allclose(r, (err.flatten(1).norm(dim=1) / x.flatten(1).norm(dim=1)).double())

    class Mask:  # the operator contract: residual(x, y) -> (B,) ||y - A x||
        def residual(self, x, y):
            return (y - 0.5 * x).flatten(1).norm(dim=1)

    y = 0.5 * x + 0.1
    assert torch.allclose(M.y_residual(x, y, Mask()), torch.full((3,), 0.4, dtype=torch.float64), atol=1e-6)


# --------------------------------------------------------------------------- weights files
def test_missing_weights_give_none_and_one_warning_naming_the_file():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        m = M.Metrics()
    msgs = [str(w.message) for w in caught if issubclass(w.category, M.MissingWeightsWarning)]
    assert len(msgs) == 2  # one for LPIPS, one for FID/KID
    assert any(M.LPIPS_ALEXNET_FILE in s for s in msgs) and any(M.INCEPTION_FILE in s for s in msgs)
    assert M.LPIPS_ALEXNET_FILE == "alexnet-owt-7be5be79.pth"
    assert M.INCEPTION_FILE == "weights-inception-2015-12-05-6726825d.pth"
    assert m.available["lpips"] is False and m.available["fid"] is False

    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with warnings.catch_warnings(record=True) as again:
        warnings.simplefilter("always")
        out = m.per_image(x, x.flip(-1))
        sets = m.set_metrics(x, x)
    assert not [w for w in again if issubclass(w.category, M.MissingWeightsWarning)]  # warned once only
    assert out["lpips"] is None and out["psnr"].shape == (2,)
    assert "y_residual" not in out  # its inputs were not given
    assert sets == {"fid": None, "kid_mean": None, "kid_std": None, "n_images": 2}


def test_explicit_missing_path_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="alexnet-owt-7be5be79.pth"):
        M.Metrics(lpips_weights=tmp_path / "nowhere" / "alexnet-owt-7be5be79.pth", set_names=())
    with pytest.raises(FileNotFoundError, match=M.INCEPTION_FILE):
        M.Metrics(names=("psnr",), inception_weights=tmp_path)  # a folder without the file


# --------------------------------------------------------------------------- LPIPS
def _random_alexnet_trunk(path):
    """A torchvision AlexNet state dict (trunk only; the loader ignores the classifier) with random
    weights, written where the real file would be."""
    import torchvision

    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None)
    torch.save({f"features.{k}": v for k, v in net.features.state_dict().items()}, path)


def test_lpips_random_trunk_via_env_folder(tmp_path, monkeypatch):
    folder = tmp_path / "weights"
    folder.mkdir()
    _random_alexnet_trunk(folder / M.LPIPS_ALEXNET_FILE)
    monkeypatch.setenv(M.WEIGHTS_ENV, str(folder))
    with warnings.catch_warnings():
        warnings.simplefilter("error", M.MissingWeightsWarning)
        m = M.Metrics(names=("psnr", "lpips"), set_names=())
    assert m.weights["lpips"] == folder / M.LPIPS_ALEXNET_FILE
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    same = m.per_image(x, x)["lpips"]
    diff = m.per_image(x, y)["lpips"]
    assert same.shape == diff.shape == (3,)
    assert torch.allclose(same, torch.zeros(3, dtype=torch.float64), atol=1e-7)
    assert (diff > 1e-3).all()
    # the trunk really is the file's: the loaded conv weights equal the saved ones
    saved = torch.load(folder / M.LPIPS_ALEXNET_FILE)
    assert torch.equal(m._nets["lpips"].net.slice1[0].weight, saved["features.0.weight"])
    gray = m.per_image(x[:, :1], y[:, :1], names=["lpips"])["lpips"]
    assert gray.shape == (3,) and torch.isfinite(gray).all()
    with pytest.raises(ValueError, match="at least 31x31"):
        m.lpips(x[..., :16, :16], y[..., :16, :16])


def test_lpips_wrong_file_is_a_value_error(tmp_path):
    bad = tmp_path / M.LPIPS_ALEXNET_FILE
    torch.save({"features.0.weight": torch.zeros(8, 3, 3, 3)}, bad)
    m = M.Metrics(names=("lpips",), set_names=(), lpips_weights=bad)
    x = torch.zeros(1, 3, 32, 32)
    with pytest.raises(ValueError, match=str(bad)):
        m.per_image(x, x)


# --------------------------------------------------------------------------- FID / KID
def test_fid_formula_matches_torch_fidelity():
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    g = torch.Generator().manual_seed(0)
    for n1, n2, d in [(30, 40, 64), (300, 400, 64)]:  # fewer and more samples than dimensions
        a = torch.randn(n1, d, generator=g, dtype=torch.float64)
        b = torch.randn(n2, d, generator=g, dtype=torch.float64) * 1.5 + 0.3
        ref = fid_statistics_to_metric(fid_features_to_statistics(a), fid_features_to_statistics(b), False)
        assert math.isclose(M.fid_from_features(a, b), ref["frechet_inception_distance"], rel_tol=1e-6)
        assert abs(M.fid_from_features(a, a)) < 1e-9


@pytest.fixture
def random_inception_file(tmp_path, monkeypatch):
    """torch-fidelity's Inception with He-initialised random weights, saved under the real name."""
    import torch_fidelity.feature_extractor_inceptionv3 as fe

    with monkeypatch.context() as mp:  # build without any weights (no download, no file)
        mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        mp.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, sd, strict=True: None)
        net = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"])
    torch.manual_seed(0)
    for mod in net.modules():
        if isinstance(mod, nn.Conv2d):  # keep activations O(1) through 90 layers of random weights
            nn.init.kaiming_normal_(mod.weight, nonlinearity="relu")
    path = tmp_path / M.INCEPTION_FILE
    torch.save(nn.Module.state_dict(net), path)
    monkeypatch.setattr(fe.FeatureExtractorInceptionV3, "INPUT_IMAGE_SIZE", 75)  # see module docstring
    return path


def test_fid_kid_with_random_inception_file(random_inception_file, monkeypatch):
    hub = random_inception_file.parent / "torch_home" / "hub" / "checkpoints"
    hub.mkdir(parents=True)
    random_inception_file.rename(hub / M.INCEPTION_FILE)  # found through $TORCH_HOME's hub cache
    m = M.Metrics(names=("psnr",))
    assert m.weights["inception"] == hub / M.INCEPTION_FILE and m.available["fid"]
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    y = (torch.rand(3, 1, 32, 32, generator=g) * 2 - 1).clamp(-1, 0)  # darker, grey: a different set
    fx = m.inception_features(x)
    fy = m.inception_features(y)
    assert fx.shape == (3, 2048) and fx.dtype == torch.float64 and fx.std(0).mean() > 1e-3
    same = m.set_metrics(x, fx)  # images on one side, cached features on the other
    diff = m.set_metrics(fx, fy)
    assert same["n_images"] == 3 and set(same) == {"fid", "kid_mean", "kid_std", "n_images"}
    scale = diff["fid"]
    assert scale > 0 and abs(same["fid"]) < 1e-6 * scale
    # KID is the unbiased MMD estimate: for identical sets of m images it is not exactly 0 but
    # O(1/m) of the kernel scale (-3e-5 here, against 1e-3 for different sets)
    assert diff["kid_mean"] > 0 and abs(same["kid_mean"]) < 0.1 * diff["kid_mean"]


def test_inception_wrong_file_is_a_value_error(tmp_path):
    bad = tmp_path / M.INCEPTION_FILE
    torch.save({"fc.weight": torch.zeros(3, 3)}, bad)
    m = M.Metrics(names=("psnr",), inception_weights=bad)
    with pytest.raises(ValueError, match=str(bad)):
        m.set_metrics(torch.zeros(2, 3, 32, 32), torch.zeros(2, 3, 32, 32))


def test_registries_and_unknown_names():
    assert set(M.DEFAULT_PER_IMAGE) <= set(M.PER_IMAGE_METRICS)
    with pytest.raises(ValueError, match="unknown metrics"):
        M.Metrics(names=("psnr", "nope"), set_names=())
    m = M.Metrics(names=("psnr", "ssim"), set_names=())
    x = torch.zeros(1, 3, 16, 16)
    with pytest.raises(ValueError, match="needs"):
        m.per_image(x, x, names=["y_residual"])


def test_per_image_with_a_real_operator():
    ops = pytest.importorskip("operators")
    op = ops.build_operator("super_resolution", image_shape=(3, 32, 32), seeds=0)
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    x_hat = (x + 0.1 * torch.randn(2, 3, 32, 32, generator=g)).clamp(-1, 1)
    y = op(x)
    m = M.Metrics(names=("psnr", "ssim", "rel_l2", "y_residual"), set_names=())
    out = m.per_image(x_hat, x, y=y, operator=op)
    assert set(out) == {"psnr", "ssim", "rel_l2", "y_residual"}
    assert all(v.shape == (2,) and v.dtype == torch.float64 for v in out.values())
    assert torch.allclose(out["y_residual"], op.residual(x_hat, y).double())
    assert torch.allclose(m.per_image(x, x, y=y, operator=op)["y_residual"], torch.zeros(2, dtype=torch.float64), atol=1e-5)
