"""Tests for the symmetry groups (operators/groups.py)."""
from __future__ import annotations

import pytest
import torch

from operators import GROUPS, build_group

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
ORDERS = {"identity": 1, "hflip": 2, "rot90": 4, "hflip_rot90": 8}


def gens(*seeds, device="cpu"):
    return [torch.Generator(device=device).manual_seed(s) for s in seeds]


def test_registry_and_errors():
    assert set(GROUPS) == set(ORDERS)
    with pytest.raises(ValueError, match="allowed.*hflip"):
        build_group("vflip")
    with pytest.raises(ValueError, match="library"):
        build_group("hflip", sample="sometimes")
    for name, order in ORDERS.items():
        assert build_group(name).order == order


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(ORDERS))
@pytest.mark.parametrize("shape", [(3, 8, 8), (4, 5, 5)])  # images and latent feature maps
def test_act_then_inverse_is_identity(name, shape, device):
    group = build_group(name)
    n = group.order
    x = torch.randn(n, *shape, device=device)
    g = torch.arange(n, device=device)  # every element once
    assert torch.equal(group.inverse(group.act(x, g), g), x)
    assert torch.equal(group.act(group.inverse(x, g), g), x)
    if n > 1:  # distinct elements act differently on a generic image
        moved = group.act(x[:1].expand(n, *shape), g)
        assert len({tuple(m.flatten().tolist()) for m in moved}) == n


def test_actions_match_torch():
    x = torch.randn(1, 2, 6, 6)
    hflip, rot, d4 = build_group("hflip"), build_group("rot90"), build_group("hflip_rot90")
    assert torch.equal(hflip.act(x, 1), torch.flip(x, dims=(-1,)))
    assert torch.equal(hflip.act(hflip.act(x, 1), 1), x)  # a flip twice is the identity
    assert torch.equal(hflip.act(x, 0), x)
    for k in range(4):
        assert torch.equal(rot.act(x, k), torch.rot90(x, k, dims=(-2, -1)))
        assert torch.equal(rot.inverse(x, k), torch.rot90(x, -k, dims=(-2, -1)))
        for f in (0, 1):
            flipped = torch.flip(x, dims=(-1,)) if f else x
            assert torch.equal(d4.act(x, 4 * f + k), torch.rot90(flipped, k, dims=(-2, -1)))


def test_per_row_elements():
    group = build_group("hflip_rot90")
    x = torch.randn(3, 2, 4, 4)
    g = torch.tensor([5, 0, 3])
    out = group.act(x, g)
    for i in range(3):
        assert torch.equal(out[i:i + 1], group.act(x[i:i + 1], int(g[i])))
    with pytest.raises(ValueError, match="one element per row"):
        group.act(x, torch.tensor([1, 2]))


def test_shapes():
    x = torch.randn(2, 3, 4, 6)
    assert torch.equal(build_group("hflip").act(x, 1), x.flip(-1))  # flips work on any shape
    with pytest.raises(ValueError, match="square"):
        build_group("rot90").act(x, 1)
    with pytest.raises(ValueError):
        build_group("hflip").act(torch.randn(3, 4, 4), 1)


def test_sample_pools():
    many = gens(*range(200))
    assert set(build_group("hflip").sample(many).tolist()) == {1}
    assert set(build_group("rot90").sample(many).tolist()) == {1, 3}  # the library's draw
    assert set(build_group("rot90", sample="nontrivial").sample(many).tolist()) == {1, 2, 3}
    assert set(build_group("rot90", sample="all").sample(many).tolist()) == {0, 1, 2, 3}
    assert set(build_group("hflip_rot90").sample(many).tolist()) == set(range(1, 8))
    assert set(build_group("hflip_rot90", sample="all").sample(many).tolist()) == set(range(8))
    assert set(build_group("identity").sample(many).tolist()) == {0}
    assert set(build_group("hflip", sample="all").sample(many).tolist()) == {0, 1}


def test_sample_is_per_row_and_seeded():
    group = build_group("hflip_rot90", sample="all")
    g = group.sample(gens(1, 2, 3, 4))
    assert g.dtype == torch.long and g.shape == (4,)
    assert torch.equal(g, group.sample(gens(1, 2, 3, 4)))
    for i, s in enumerate((1, 2, 3, 4)):  # a row's element depends only on its own generator
        assert group.sample(gens(s)).item() == g[i].item()
    assert group.sample(gens(*range(50))).unique().numel() > 4
    with pytest.raises(ValueError):
        group.sample([])


def test_gradients_flow():
    group = build_group("hflip_rot90")
    x = torch.randn(2, 1, 3, 3, dtype=torch.float64, requires_grad=True)
    g = torch.tensor([6, 3])
    assert torch.autograd.gradcheck(lambda t: group.act(t, g), (x,))
    assert torch.autograd.gradcheck(lambda t: group.inverse(t, g), (x,))
