"""EquiBench forward operators, measurement noise and symmetry groups (see docs/CONTRACTS.md).

    op = build_operator("gaussian_blur", (3, 32, 32), seeds=[s0, s1], **EMBEDDED_DEFAULTS["gaussian_blur"])
    y = add_noise(op(x), 0.05, generators)

Importing the package registers every operator module in `OPERATORS`.
"""
from . import blur, hdr, identity, inpainting, nonlinear_blur, phase_retrieval, super_resolution  # noqa: F401  (registration)
from .base import Operator, cg_pseudo_inverse
from .groups import GROUPS, Group, build_group
from .noise import add_noise
from .nonlinear_blur import train_blur_net
from .registry import EMBEDDED_DEFAULTS, OPERATORS, build_operator

__all__ = [
    "Operator", "cg_pseudo_inverse", "OPERATORS", "EMBEDDED_DEFAULTS", "build_operator", "add_noise",
    "GROUPS", "Group", "build_group", "train_blur_net",
]
