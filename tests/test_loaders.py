"""Loaders: real-checkpoint layouts with random weights of the right shapes, loaded strictly and
offline, and the two failure modes (missing file -> FileNotFoundError naming it; mismatched state
dict -> ValueError naming the file and keys)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from solvers import loaders as L
from solvers.guided_unet import GUIDED_CONFIGS, GuidedUNet
from solvers.priors import Autoencoder, LatentPrior, UNetPrior

diffusers = pytest.importorskip("diffusers")


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


# --------------------------------------------------------------------------- tiny diffusers models
def _tiny_unet(ch=3, size=8):
    torch.manual_seed(0)
    return diffusers.UNet2DModel(sample_size=size, in_channels=ch, out_channels=ch, layers_per_block=1,
                                 block_out_channels=(8, 16), norm_num_groups=4,
                                 down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                                 up_block_types=("AttnUpBlock2D", "UpBlock2D"))


_AE_KW = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
              up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 16), layers_per_block=1,
              latent_channels=3, norm_num_groups=4, sample_size=16)


def _tiny_vq():
    torch.manual_seed(1)
    return diffusers.VQModel(num_vq_embeddings=32, **_AE_KW)


def _tiny_kl(**kw):
    torch.manual_seed(2)
    return diffusers.AutoencoderKL(**{**_AE_KW, **kw})


def _scheduler(root: Path, **kw):
    diffusers.DDPMScheduler(**kw).save_pretrained(root / "scheduler")


def _ldm_dir(root: Path, first_stage: str = "vqvae") -> Path:
    _tiny_unet().save_pretrained(root / "unet")
    (_tiny_vq() if first_stage == "vqvae" else _tiny_kl()).save_pretrained(root / first_stage)
    _scheduler(root, beta_schedule="scaled_linear", beta_start=0.0015, beta_end=0.0195)
    return root


def _pixel_dir(root: Path, size=8) -> Path:
    _tiny_unet(size=size).save_pretrained(root / "unet")
    _scheduler(root)
    return root


def test_diffusers_pixel_prior(tmp_path):
    root = _pixel_dir(tmp_path / "pix")
    prior = L.load_prior({"kind": "diffusers_pixel", "path": str(root)})
    assert isinstance(prior, UNetPrior) and prior.space == "pixel" and prior.shape == (3, 8, 8)
    assert prior.schedule.kind == "linear" and prior.schedule.T == 1000
    ref = _tiny_unet()
    for (k, v), (k2, v2) in zip(prior.model.state_dict().items(), ref.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)  # the saved weights, not a fresh initialisation
    assert not any(p.requires_grad for p in prior.parameters()) and not prior.training
    x = torch.randn(2, 3, 8, 8)
    eps = prior.eps(x, torch.tensor([5, 700]))
    assert eps.shape == x.shape and torch.isfinite(eps).all()
    with torch.no_grad():
        direct = ref(x, torch.tensor([5.0, 700.0])).sample
    assert torch.allclose(eps, direct, atol=1e-6)


def test_diffusers_ldm_vq_prior(tmp_path):
    root = _ldm_dir(tmp_path / "ldm")
    cfg = json.loads((root / "vqvae" / "config.json").read_text())
    assert cfg["scaling_factor"] == pytest.approx(0.18215)  # diffusers writes its default ...
    prior = L.load_prior({"kind": "diffusers_ldm", "path": root})
    assert isinstance(prior, LatentPrior) and prior.space == "latent"
    assert prior.autoencoder.scale == 1.0  # ... which LDM-VQ pipelines never apply
    assert prior.shape == (3, 8, 8) and prior.image_shape == (3, 16, 16)
    assert prior.schedule.kind == "scaled_linear"
    assert prior.schedule.betas[0].item() == pytest.approx(0.0015) and prior.schedule.betas[-1].item() == pytest.approx(0.0195)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = prior.encode(x)
    assert z.shape == (2, 3, 8, 8)
    assert prior.decode(z).shape == x.shape
    assert prior.eps(z, torch.tensor([10, 900])).shape == z.shape
    # gradients reach the latent through the quantiser (straight-through), as latent solvers need
    z = z.detach().requires_grad_(True)
    prior.decode(z).sum().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0
    scaled = L.load_prior({"kind": "diffusers_ldm", "path": root, "scale": 0.5})
    assert torch.allclose(scaled.encode(x), 0.5 * prior.encode(x), atol=1e-6)


def test_diffusers_ldm_kl_and_sd_vae(tmp_path):
    root = _ldm_dir(tmp_path / "ldm_kl", first_stage="vae")
    prior = L.load_prior({"kind": "diffusers_ldm", "path": root})
    assert prior.autoencoder.scale == pytest.approx(0.18215)  # KL: the config's scaling_factor
    # SD v1.5 VAE layout: a pipeline folder holding vae/
    ae = L.load_autoencoder({"kind": "sd_vae", "path": root, "image_size": 16})
    assert isinstance(ae, Autoencoder) and ae.scale == pytest.approx(0.18215)
    assert ae.latent_shape == (3, 8, 8) and ae.image_shape == (3, 16, 16)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    z = ae.encode(x)
    assert z.shape == (2, 3, 8, 8) and ae.decode(z).shape == x.shape
    with torch.no_grad():
        mean = _tiny_kl().encode(x).latent_dist.mean
    assert torch.allclose(z, 0.18215 * mean, atol=1e-5)  # deterministic: the posterior mean, scaled
    assert torch.equal(ae.encode(x), z)
    same = L.load_autoencoder({"kind": "diffusers_vae", "path": root / "vae", "scale": 1.0})
    assert same.scale == 1.0
    first = L.load_autoencoder({"kind": "diffusers_ldm", "path": tmp_path / "ldm_kl"})
    assert first.scale == pytest.approx(0.18215)


def _embedded_root(root: Path) -> Path:
    _pixel_dir(root / "pixel", size=32)
    lat = root / "latent"
    _tiny_unet(size=16).save_pretrained(lat / "unet")
    _tiny_kl(sample_size=32).save_pretrained(lat / "vae")
    _scheduler(lat)
    (lat / "latent_scale.json").write_text(json.dumps({"scale": 0.7}))
    return root


def test_embedded_layout(tmp_path):
    root = _embedded_root(tmp_path / "weights")
    pix = L.load_prior({"kind": "embedded", "name": "pixel", "root": root})
    assert pix.name == "embedded:pixel" and pix.shape == (3, 32, 32)
    lat = L.load_prior({"kind": "embedded", "name": "latent", "root": str(root)})
    assert lat.name == "embedded:latent" and lat.autoencoder.scale == 0.7
    assert lat.shape == (3, 16, 16) and lat.image_shape == (3, 32, 32)
    x = torch.rand(1, 3, 32, 32) * 2 - 1
    assert lat.decode(lat.encode(x)).shape == x.shape
    ae = L.load_autoencoder({"kind": "embedded", "root": root})
    assert ae.scale == 0.7 and ae.image_shape == (3, 32, 32)
    (root / "latent" / "latent_scale.json").unlink()
    with pytest.raises(FileNotFoundError, match="latent_scale.json"):
        L.load_prior({"kind": "embedded", "name": "latent", "root": root})
    with pytest.raises(ValueError, match="pixel"):
        L.load_prior({"kind": "embedded", "name": "nope", "root": root})


@pytest.mark.skipif(not (L.EMBEDDED_ROOT / "pixel" / "unet" / "config.json").is_file(),
                    reason="the embedded weights have not been trained/committed yet")
def test_shipped_embedded_weights_load_offline():
    for which in ("pixel", "latent"):
        if not (L.EMBEDDED_ROOT / which / "unet" / "config.json").is_file():
            continue
        prior = L.load_prior(f"embedded:{which}")
        x = torch.zeros(1, *prior.shape)
        assert prior.eps(x, torch.tensor([500])).shape == x.shape
        assert prior.image_shape == (3, 32, 32)


# --------------------------------------------------------------------------- missing / mismatched
def test_missing_files_are_named(tmp_path):
    root = _ldm_dir(tmp_path / "ldm")
    (root / "scheduler" / "scheduler_config.json").unlink()
    with pytest.raises(FileNotFoundError, match=str(root / "scheduler" / "scheduler_config.json")):
        L.load_prior({"kind": "diffusers_ldm", "path": root})
    _scheduler(root)
    (root / "unet" / "diffusion_pytorch_model.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match=str(root / "unet" / "diffusion_pytorch_model.safetensors")):
        L.load_prior({"kind": "diffusers_ldm", "path": root})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "nothing" / "vqvae" / "config.json")):
        L.load_prior({"kind": "diffusers_ldm", "path": tmp_path / "nothing"})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "ffhq_10m.pt")):
        L.load_prior({"kind": "guided_diffusion", "path": tmp_path / "ffhq_10m.pt"})
    with pytest.raises(FileNotFoundError, match=str(tmp_path / "vae" / "config.json")):
        L.load_autoencoder({"kind": "sd_vae", "path": tmp_path / "vae"})


def test_diffusers_mismatch_is_a_value_error_never_random(tmp_path):
    from safetensors.torch import load_file, save_file

    root = _pixel_dir(tmp_path / "pix")
    weights = root / "unet" / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    dropped = sorted(state)[0]
    save_file({k: v for k, v in state.items() if k != dropped}, weights)  # diffusers would random-init it
    with pytest.raises(ValueError, match=rf"{weights}.*missing keys: {dropped}"):
        L.load_prior({"kind": "diffusers_pixel", "path": root})

    _pixel_dir(root)  # restore, then make the config disagree with the tensors' shapes
    cfg_path = root / "unet" / "config.json"
    cfg = json.loads(cfg_path.read_text())
    cfg["block_out_channels"] = [8, 24]
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match=str(weights)):
        L.load_prior({"kind": "diffusers_pixel", "path": root})

    cfg["_class_name"] = "VQModel"
    cfg_path.write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="UNet2DModel"):
        L.load_prior({"kind": "diffusers_pixel", "path": root})


def test_scheduler_must_predict_eps(tmp_path):
    root = _pixel_dir(tmp_path / "pix")
    _scheduler(root, prediction_type="v_prediction")
    with pytest.raises(ValueError, match="prediction_type 'v_prediction'"):
        L.load_prior({"kind": "diffusers_pixel", "path": root})


def test_unknown_kinds():
    with pytest.raises(ValueError, match="allowed"):
        L.load_prior({"kind": "nope"})
    with pytest.raises(ValueError, match="load_autoencoder"):
        L.load_prior({"kind": "sd_vae", "path": "x"})
    with pytest.raises(ValueError, match="kind"):
        L.load_prior({"path": "x"})


# --------------------------------------------------------------------------- guided diffusion
def _random_state(config, scale=0.02):
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in GuidedUNet(config).state_dict().items()}
    g = torch.Generator().manual_seed(0)
    return {k: torch.randn(s, generator=g) * scale for k, s in shapes.items()}


def test_guided_diffusion_ffhq_real_shapes_load_strictly(tmp_path):
    cfg = GUIDED_CONFIGS["ffhq256"]
    state = _random_state(cfg)
    assert sum(v.numel() for v in state.values()) == 93_563_910  # the FFHQ 256 model's size
    assert len(state) == 362
    path = tmp_path / "ffhq_10m.pt"
    torch.save(state, path)
    prior = L.load_prior({"kind": "guided_diffusion", "path": path})  # config from the file name
    assert prior.name == "guided_diffusion:ffhq256" and prior.shape == (3, 256, 256)
    assert prior.schedule.kind == "linear" and prior.schedule.T == 1000
    loaded = prior.model.state_dict()
    for key in ("input_blocks.0.0.weight", "middle_block.1.qkv.weight", "out.2.weight",
                "output_blocks.3.1.qkv.weight", "output_blocks.3.2.emb_layers.1.weight"):
        assert torch.equal(loaded[key], state[key])
    assert prior.model.out[2].out_channels == 6  # learn_sigma: eps is the first 3
    x = torch.randn(1, 3, 64, 64)  # the real config at a small resolution, to stay fast on CPU
    with torch.no_grad():
        eps = prior.eps(x, torch.tensor([500]))
    assert eps.shape == (1, 3, 64, 64) and torch.isfinite(eps).all()


def _small_config():
    return {"preset": "ffhq256", "model_channels": 32, "channel_mult": "1,2", "image_size": 32,
            "attention_resolutions": "16", "num_head_channels": 16}


def test_guided_diffusion_mismatch_and_config_errors(tmp_path):
    cfg = GUIDED_CONFIGS["ffhq256"].with_overrides(**{k: v for k, v in _small_config().items() if k != "preset"})
    state = _random_state(cfg)
    good = tmp_path / "small.pt"
    torch.save(state, good)
    spec = {"kind": "guided_diffusion", "path": good, "config": _small_config()}
    prior = L.load_prior(spec)
    assert prior.shape == (3, 32, 32) and prior.eps(torch.randn(2, 3, 32, 32), torch.tensor([1, 2])).shape == (2, 3, 32, 32)

    bad = dict(state)
    bad["out.2.weight"] = torch.zeros(3, 32, 3, 3)  # learn_sigma=False shapes
    del bad["time_embed.0.bias"]
    bad["label_emb.weight"] = torch.zeros(1000, 128)  # a class-conditional checkpoint's key
    bad_path = tmp_path / "bad.pt"
    torch.save(bad, bad_path)
    with pytest.raises(ValueError) as err:
        L.load_prior({**spec, "path": bad_path})
    msg = str(err.value)
    assert str(bad_path) in msg and "time_embed.0.bias" in msg and "label_emb.weight" in msg
    assert "out.2.weight (3, 32, 3, 3)" in msg

    with pytest.raises(ValueError, match="no guided-diffusion config"):
        L.load_prior({"kind": "guided_diffusion", "path": good})  # unknown file name, no config
    with pytest.raises(ValueError, match="unknown guided-diffusion config keys"):
        L.load_prior({**spec, "config": {"preset": "ffhq256", "num_chanels": 3}})
    torch.save({"model": "not tensors"}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="junk.pt"):
        L.load_prior({**spec, "path": tmp_path / "junk.pt"})


def test_guided_imagenet_config_shapes():
    with torch.device("meta"):
        net = GuidedUNet(GUIDED_CONFIGS["imagenet256"])
    sd = net.state_dict()
    assert sum(v.numel() for v in sd.values()) == 552_814_086 and len(sd) == 566
    assert sd["input_blocks.0.0.weight"].shape == (256, 3, 3, 3)
    # attention at 32, 16 and 8 px: downsampling rates 8, 16, 32
    assert GUIDED_CONFIGS["imagenet256"].attention_rates == {8, 16, 32}
