"""Symmetry groups acting on images and latent feature maps, one element per row.

Checked against the EquiReg authors' library (`Anima-Lab/Equireg`, equireg/groups.py): horizontal
flip is ``torch.flip`` on the last axis, rotations are ``torch.rot90(x, k, dims=(-2, -1))``, and
the library draws from the non-identity elements only: the flip for ``hflip`` and ``k in {1, 3}``
(never 180 degrees) for ``rot90``; it draws one element per call for the whole batch.

Here every group is the full group (identity: 1 element; hflip: 2; rot90: k = 0..3; hflip_rot90: the
8-element dihedral group, element ``4 f + k`` = ``rot90^k`` after ``flip^f``), and what is drawn is
an option, ``sample``:
- ``"library"`` (default): what the library draws (hflip: the flip; rot90: k in {1, 3}); for
  hflip_rot90, which the library lacks, every non-identity element;
- ``"nontrivial"``: uniform over the non-identity elements;
- ``"all"``: uniform over the whole group (the Haar measure), identity included.
The identity group always draws its only element. `sample` draws one element per row from that
row's own generator (EquiBench's convention: rows never share randomness).

Actions are pixel permutations, applied per row with one ``gather`` from a cached index table (no
host synchronisation, differentiable, any ``(B, C, H, W)``; rotations need ``H == W``).
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch

SAMPLE_MODES = ("library", "nontrivial", "all")


def _rot(k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    return lambda x: torch.rot90(x, k, dims=(-2, -1)) if k % 4 else x


def _flip_then_rot(f: int, k: int) -> Callable[[torch.Tensor], torch.Tensor]:
    rot = _rot(k)
    return lambda x: rot(torch.flip(x, dims=(-1,)) if f else x)


class Group:
    """A finite group of pixel permutations; subclasses list their elements and library draws."""

    name = "group"
    rotations = False  # whether some element needs square inputs

    def __init__(self, sample: str = "library") -> None:
        if sample not in SAMPLE_MODES:
            raise ValueError(f"group {self.name!r}: sample must be one of {list(SAMPLE_MODES)}, got {sample!r}")
        self.sample_mode = sample
        self._tables: dict = {}

    def element_ops(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The actions, element 0 being the identity."""
        raise NotImplementedError

    def library_pool(self) -> list[int]:
        """The elements the authors' library draws from."""
        return list(range(1, self.order)) or [0]

    @property
    def order(self) -> int:
        return len(self.element_ops())

    @property
    def pool(self) -> list[int]:
        """The elements `sample` draws from, uniformly."""
        modes = {"library": self.library_pool, "nontrivial": lambda: list(range(1, self.order)) or [0],
                 "all": lambda: list(range(self.order))}
        return modes[self.sample_mode]()

    def sample(self, generators: Sequence[torch.Generator]) -> torch.Tensor:
        """One element per row, row ``i`` drawn from ``generators[i]``: LongTensor (B,) on the
        first generator's device."""
        if not generators:
            raise ValueError("sample needs at least one generator")
        device = generators[0].device
        pool = self._pool_on(device)
        # the indices stay on the generators' device: no per-row read back to the host (a sync on CUDA)
        picks = torch.cat([torch.randint(len(pool), (1,), generator=g, device=g.device).to(device) for g in generators])
        return pool[picks]

    def _pool_on(self, device: torch.device) -> torch.Tensor:
        key = ("pool", self.sample_mode, device)
        if key not in self._tables:
            self._tables[key] = torch.tensor(self.pool, device=device)
        return self._tables[key]

    # ------------------------------------------------------------------ actions
    def _table(self, h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """``(perm, inv)``, each ``(order, H*W)``: ``act_e(x).flat[p] = x.flat[perm[e, p]]``."""
        key = (h, w, device)
        if key not in self._tables:
            if self.rotations and h != w:
                raise ValueError(f"group {self.name!r} rotates: needs square inputs, got {h}x{w}")
            index = torch.arange(h * w).view(1, 1, h, w)
            perm = torch.stack([op(index).reshape(-1) for op in self.element_ops()])
            self._tables[key] = (perm.to(device), torch.argsort(perm, dim=1).to(device))
        return self._tables[key]

    def _apply(self, x: torch.Tensor, g: torch.Tensor | int, inverse: bool) -> torch.Tensor:
        if x.dim() != 4:
            raise ValueError(f"group {self.name!r}: expected (B, C, H, W), got shape {tuple(x.shape)}")
        b, c, h, w = x.shape
        g = torch.as_tensor(g, dtype=torch.long, device=x.device)
        if g.dim() == 0:
            g = g.expand(b)
        if g.shape != (b,):
            raise ValueError(f"group {self.name!r}: need one element per row ({b}), got shape {tuple(g.shape)}")
        perm, inv = self._table(h, w, x.device)
        idx = (inv if inverse else perm)[g]  # (B, H*W)
        out = x.reshape(b, c, h * w).gather(2, idx[:, None, :].expand(b, c, h * w))
        return out.view(b, c, h, w)

    def act(self, x: torch.Tensor, g: torch.Tensor | int) -> torch.Tensor:
        """``T_{g_i} x_i`` for every row ``i`` (``g`` a LongTensor (B,) or one int for all rows)."""
        return self._apply(x, g, inverse=False)

    def inverse(self, x: torch.Tensor, g: torch.Tensor | int) -> torch.Tensor:
        """``T_{g_i}^{-1} x_i`` for every row ``i``."""
        return self._apply(x, g, inverse=True)


class IdentityGroup(Group):
    name = "identity"

    def element_ops(self):
        return [_rot(0)]


class HFlip(Group):
    name = "hflip"

    def element_ops(self):
        return [_flip_then_rot(0, 0), _flip_then_rot(1, 0)]


class Rot90(Group):
    name = "rot90"
    rotations = True

    def element_ops(self):
        return [_rot(k) for k in range(4)]

    def library_pool(self):
        return [1, 3]


class HFlipRot90(Group):
    name = "hflip_rot90"
    rotations = True

    def element_ops(self):
        return [_flip_then_rot(f, k) for f in (0, 1) for k in range(4)]


GROUPS: dict[str, type[Group]] = {cls.name: cls for cls in (IdentityGroup, HFlip, Rot90, HFlipRot90)}


def build_group(name: str, sample: str = "library") -> Group:
    """The group called ``name`` (one of `GROUPS`), drawing per ``sample`` (see the module doc)."""
    cls = GROUPS.get(name)
    if cls is None:
        raise ValueError(f"unknown group {name!r}; allowed: {sorted(GROUPS)}")
    return cls(sample=sample)
