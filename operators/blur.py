"""Linear blurs: reflection padding + depthwise cross-correlation with a per-row kernel.

Checked in DPS (`DPS2022/diffusion-posterior-sampling`, util/img_utils.py ``Blurkernel``) and DAPS
(`zhangbingliang2019/DAPS`, forward_operator/__init__.py): ``nn.ReflectionPad2d(K // 2)`` followed by
``nn.Conv2d(3, 3, K, groups=3, bias=False)`` holding the kernel, so the output has the image size and
``y = A x`` is a cross-correlation (a delta at the centre returns the kernel flipped).

- Gaussian: ``scipy.ndimage.gaussian_filter`` of a centred delta in a KxK array (std 3.0, K = 61 at
  256 px). `gaussian_kernel` reproduces it exactly: a 1-D discrete Gaussian of radius
  ``int(4 * std + 0.5)`` normalised to sum 1, folded back into the array with scipy's ``reflect``
  boundary when the radius exceeds K // 2, outer product of two of them.
- Motion: LeviBorodenko's ``motionblur.Kernel(size=61, intensity=0.5)``. `sample_motion_path` and
  `motion_kernel` are an own re-implementation of its sampling scheme (read in
  `LeviBorodenko/motionblur` motionblur.py), drawing from a torch.Generator; see their docstrings
  for what is kept and what differs.

The true adjoint of reflect-pad + correlation is ``P^T C^T``: ``C^T`` is a transposed convolution
(a full convolution with the kernel, i.e. correlation with its flip) onto the padded canvas and ``P^T`` folds each padded margin back
onto the interior pixels it was copied from (`reflect_pad_adjoint`). It is *not* a plain blur with
the flipped kernel: the pixels next to the border receive the margin's mass as well.
``transpose(kind="official")`` is the identity, as in the official code.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .base import Operator, check_number, scale_odd_kernel
from .registry import register
from .super_resolution import imresize

# ---------------------------------------------------------------------------------------------
# reflection padding as an index map, with its exact adjoint
# ---------------------------------------------------------------------------------------------


def reflect_index(n: int, pad: int, device: torch.device | None = None) -> torch.Tensor:
    """Source index of each of the ``n + 2 pad`` padded positions under ``reflect`` padding (edge
    sample not repeated, as ``nn.ReflectionPad2d``), mirrored repeatedly if ``pad >= n``."""
    pos = torch.arange(-pad, n + pad, device=device)
    if n == 1:
        return torch.zeros_like(pos)
    period = 2 * (n - 1)
    pos = torch.remainder(pos, period)
    return torch.where(pos > n - 1, period - pos, pos)


def reflect_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
    """Reflection-pad the last two axes of ``x`` by ``pad`` on every side."""
    if pad == 0:
        return x
    h, w = x.shape[-2:]
    x = x.index_select(-2, reflect_index(h, pad, x.device))
    return x.index_select(-1, reflect_index(w, pad, x.device))


def reflect_pad_adjoint(z: torch.Tensor, pad: int) -> torch.Tensor:
    """Adjoint of `reflect_pad`: add every padded sample back onto its source pixel."""
    if pad == 0:
        return z
    hp, wp = z.shape[-2:]
    h, w = hp - 2 * pad, wp - 2 * pad
    out = z.new_zeros(z.shape[:-2] + (h, wp)).index_add(-2, reflect_index(h, pad, z.device), z)
    return out.new_zeros(z.shape[:-2] + (h, w)).index_add(-1, reflect_index(w, pad, z.device), out)


def _depthwise_weight(kernels: torch.Tensor, channels: int) -> torch.Tensor:
    """``(R, K, K)`` kernels -> conv weight ``(R * C, 1, K, K)`` (one kernel per row, every channel)."""
    return kernels.repeat_interleave(channels, dim=0)[:, None]


def depthwise_correlate(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Valid cross-correlation of each channel of row ``i`` with ``kernels[i]``; ``kernels`` of batch
    1 apply to every row. ``x``: (B, C, H + K - 1, W + K - 1) -> (B, C, H, W)."""
    b, c = x.shape[:2]
    if kernels.shape[0] == 1:
        return F.conv2d(x, _depthwise_weight(kernels, c), groups=c)
    y = F.conv2d(x.reshape(1, b * c, *x.shape[-2:]), _depthwise_weight(kernels, c), groups=b * c)
    return y.reshape(b, c, *y.shape[-2:])


def depthwise_correlate_adjoint(y: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Adjoint of `depthwise_correlate`: (B, C, H, W) -> (B, C, H + K - 1, W + K - 1)."""
    b, c = y.shape[:2]
    if kernels.shape[0] == 1:
        return F.conv_transpose2d(y, _depthwise_weight(kernels, c), groups=c)
    z = F.conv_transpose2d(y.reshape(1, b * c, *y.shape[-2:]), _depthwise_weight(kernels, c), groups=b * c)
    return z.reshape(b, c, *z.shape[-2:])


def blur_reflect(x: torch.Tensor, kernels: torch.Tensor) -> torch.Tensor:
    """Same-size blur: ``reflect_pad(x, K // 2)`` then per-row depthwise correlation (odd K)."""
    return depthwise_correlate(reflect_pad(x, kernels.shape[-1] // 2), kernels)


# ---------------------------------------------------------------------------------------------
# kernels
# ---------------------------------------------------------------------------------------------


def gaussian_taps(size: int, std: float, truncate: float = 4.0) -> torch.Tensor:
    """The 1-D factor of `gaussian_kernel`: ``size`` taps (float64, sum 1)."""
    radius = int(truncate * std + 0.5)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * (offsets / std) ** 2) if std > 0 else (offsets == 0).to(torch.float64)
    g = g / g.sum()
    # scipy's "reflect" boundary (d c b a | a b c d | d c b a) folds taps that leave the array back in
    pos = torch.remainder(offsets.long() + size // 2, 2 * size)
    pos = torch.where(pos >= size, 2 * size - 1 - pos, pos)
    return torch.zeros(size, dtype=torch.float64).index_add(0, pos, g)


def gaussian_kernel(size: int, std: float, truncate: float = 4.0) -> torch.Tensor:
    """``scipy.ndimage.gaussian_filter`` of a centred delta in a ``size x size`` array (float64)."""
    g1 = gaussian_taps(size, std, truncate)
    return torch.outer(g1, g1)


_PATH_EPS = 0.1  # the motionblur library's "eps" (added to the step scale and to the angle mode)


class _UniformStream:
    """Scalar U(0, 1) draws from a torch.Generator, fetched in chunks (deterministic per seed)."""

    def __init__(self, generator: torch.Generator, chunk: int = 256):
        self.generator, self.chunk, self.buf = generator, chunk, []

    def __call__(self, lo: float = 0.0, hi: float = 1.0) -> float:
        if not self.buf:
            self.buf = torch.rand(self.chunk, generator=self.generator, dtype=torch.float64).tolist()[::-1]
        return lo + (hi - lo) * self.buf.pop()

    def beta_int(self, a: int, b: int) -> float:
        """Beta(a, b) for integer a, b: the a-th smallest of a + b - 1 uniforms (exact)."""
        return sorted(self() for _ in range(a + b - 1))[a - 1]

    def triangular(self, left: float, mode: float, right: float) -> float:
        """Triangular(left, mode, right) by inverting its CDF."""
        u = self()
        if right <= left:
            return left
        cut = (mode - left) / (right - left)
        if u < cut:
            return left + math.sqrt(u * (right - left) * (mode - left))
        return right - math.sqrt((1 - u) * (right - left) * (right - mode))


def sample_motion_path(size: int, intensity: float, generator: torch.Generator,
                       max_draws: int = 1_000_000) -> dict:
    """A random camera path on the 2x supersampled ``2 size x 2 size`` canvas, with the statistics of
    ``motionblur.Kernel(size, intensity)._createPath``:

    - total length ``L = 0.75 * D * (U(0,1) + U(0, I^2))`` with ``D`` the canvas diagonal;
    - steps ``Beta(1, 30) * (1 - I + 0.1) * D``, each kept only if shorter than ``L``, drawn until
      their sum reaches ``L``;
    - a maximal angle ``U(0, I * pi)``, a sign-flip probability ``Beta(2, 20)``; the first angle
      ``U(-max, max)``, every further one ``Triangular(0, I * max, max + 0.1)`` in magnitude, with the
      previous angle's sign, flipped with that probability;
    - increments ``step * exp(i angle)``, path = their cumulative sum, centred on its centre of mass,
      rotated by ``U(0, pi)`` and moved to the canvas centre.

    Returns the path (``(N, 2)`` float64, x = column, y = row, pixel-centre coordinates) and the drawn
    quantities. Beta variates come from order statistics of uniforms, so every draw is from the
    generator. A degenerate ``L`` (vanishingly rare) ends after ``max_draws`` draws with what it has.
    """
    u = _UniformStream(generator)
    canvas = 2 * size
    diag = math.sqrt(2.0) * canvas
    max_len = 0.75 * diag * (u() + u(0.0, intensity ** 2))
    steps: list[float] = []
    total, draws = 0.0, 0
    while total < max_len and draws < max_draws:
        step = u.beta_int(1, 30) * (1 - intensity + _PATH_EPS) * diag
        draws += 1
        if step < max_len:
            steps.append(step)
            total += step
    max_angle = u(0.0, intensity * math.pi)
    jitter = u.beta_int(2, 20)
    angles: list[float] = []
    if steps:
        angles.append(u(-max_angle, max_angle))
    while len(angles) < len(steps):
        magnitude = u.triangular(0.0, intensity * max_angle, max_angle + _PATH_EPS)
        sign = math.copysign(1.0, angles[-1]) if angles[-1] != 0 else 0.0
        angles.append(magnitude * (-sign if u() < jitter else sign))
    st = torch.tensor(steps, dtype=torch.float64)
    an = torch.tensor(angles, dtype=torch.float64)
    path = torch.cumsum(torch.complex(st * torch.cos(an), st * torch.sin(an)), 0)
    if len(steps):
        path = path - path.mean()
    rot = u(0.0, math.pi)
    path = path * complex(math.cos(rot), math.sin(rot)) + complex((canvas - 1) / 2, (canvas - 1) / 2)
    return {"path": torch.stack([path.real, path.imag], dim=1), "max_len": max_len, "steps": st,
            "angles": an, "max_angle": max_angle, "jitter": jitter, "rotation": rot, "diagonal": diag}


def _polyline_coverage(points: torch.Tensor, canvas: int, width: float) -> torch.Tensor:
    """Anti-aliased drawing of the polyline through ``points`` (x, y) on a ``canvas``-square grid:
    each pixel gets ``clamp(width/2 + 1/2 - distance, 0, 1)``, overlaps do not add (like a drawn line).
    Only the pixels in the path's bounding box (plus the line's reach) are evaluated."""
    reach = width / 2 + 0.5
    lo = (points.min(dim=0).values - reach).floor().clamp(0, canvas - 1).long().tolist()
    hi = (points.max(dim=0).values + reach).ceil().clamp(0, canvas - 1).long().tolist()
    out = torch.zeros(canvas, canvas, dtype=torch.float64)
    if points[:, 0].min() > canvas - 1 + reach or points[:, 0].max() < -reach \
            or points[:, 1].min() > canvas - 1 + reach or points[:, 1].max() < -reach:
        return out
    xs = torch.arange(lo[0], hi[0] + 1, dtype=torch.float64)
    ys = torch.arange(lo[1], hi[1] + 1, dtype=torch.float64)
    pix = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1).reshape(-1, 1, 2)  # (P, 1, 2) x, y
    if points.shape[0] == 1:
        d2 = ((pix[:, 0] - points[0]) ** 2).sum(-1)
    else:
        a, ab = points[:-1][None], (points[1:] - points[:-1])[None]  # (1, S, 2)
        t = (((pix - a) * ab).sum(-1) / (ab * ab).sum(-1).clamp_min(1e-12)).clamp(0, 1)
        d2 = ((pix - a - t[..., None] * ab) ** 2).sum(-1).min(dim=1).values
    cover = (reach - d2.sqrt()).clamp(0, 1).reshape(len(ys), len(xs))
    out[lo[1]:hi[1] + 1, lo[0]:hi[0] + 1] = cover
    return out


def motion_kernel(size: int, intensity: float, generator: torch.Generator) -> torch.Tensor:
    """A ``size x size`` motion-blur kernel (float64, sum 1) rendered like ``motionblur.Kernel``:
    the path of `sample_motion_path` drawn on the 2x canvas with line width ``int(D / 150)`` (at least
    one pixel), blurred with a Gaussian of std ``int(0.01 * D)`` when that is >= 1, downsampled by 2
    with an antialiased filter, normalised to sum 1.

    Differences from the library, none of which changes the path statistics: the line is drawn
    anti-aliased rather than with PIL's aliased rasteriser; the Gaussian is an exact one rather than
    PIL's box approximation; the 2x reduction is MATLAB-style antialiased bicubic (`imresize`) rather
    than PIL's Lanczos, with negative ringing clipped as PIL's uint8 output does; no uint8
    quantisation; and the path is centred on the canvas centre ``(2 size - 1) / 2`` in pixel-centre
    coordinates, where the library's ``(x + iy) / 2`` sits half a canvas pixel off.

    The one-pixel minimum width is also a fix: the library's width ``int(D / 150)`` is 0 for every
    size below 54, PIL then draws nothing, and ``kernelMatrix`` divides 0 by 0 (measured: all-NaN
    kernels at sizes 9 to 53, valid ones at 61). Over 150 kernels at size 61, intensity 0.5, this
    generator and the library agree on the kernel's centre offset (0.38 / 0.39 px down), radius of
    gyration (11.3 / 10.8 px, sd 5.1 / 4.9) and support above 1% of the peak (137 / 135 px).
    """
    path = sample_motion_path(size, intensity, generator)
    canvas = 2 * size
    diag = path["diagonal"]
    if path["path"].shape[0] == 0:
        k = torch.zeros(size, size, dtype=torch.float64)
        k[size // 2, size // 2] = 1.0
        return k
    img = _polyline_coverage(path["path"], canvas, max(1.0, float(int(diag / 150))))
    std = int(diag * 0.01)
    if std >= 1:
        g = gaussian_taps(2 * int(4 * std + 0.5) + 1, std)
        r = g.shape[0] // 2
        img = F.conv2d(img[None, None], g.view(1, 1, 1, -1), padding=(0, r))
        img = F.conv2d(img, g.view(1, 1, -1, 1), padding=(r, 0))[0, 0]
    k = imresize(img[None, None], 0.5, out_size=(size, size))[0, 0].clamp_min(0)
    return k / k.sum()


# ---------------------------------------------------------------------------------------------
# operators
# ---------------------------------------------------------------------------------------------


class KernelBlur(Operator):
    """Shared machinery: per-row kernels ``(B, K, K)``; subclasses only make one kernel per seed."""

    linear = True
    _TENSORS = ("kernels",)

    @classmethod
    def _validate(cls, params, image_shape):
        check_number(cls.name, params, "kernel_size", lo=1, integer=True)
        if params["kernel_size"] % 2 == 0:
            raise ValueError(f"{cls.name}: parameter 'kernel_size' must be odd (same-size output), got {params['kernel_size']}")

    def _make_kernel(self, generator: torch.Generator) -> torch.Tensor:
        raise NotImplementedError

    def _build(self) -> None:
        self.kernels = torch.stack([self._make_kernel(g) for g in self.generators()])

    @property
    def pad(self) -> int:
        return self.params["kernel_size"] // 2

    def _forward(self, x):
        return blur_reflect(x, self._buf("kernels", x))

    def _adjoint(self, y):
        return reflect_pad_adjoint(depthwise_correlate_adjoint(y, self._buf("kernels", y)), self.pad)

    def _official_transpose(self, y):
        return y

    def naive_inverse(self, y):
        """The blurred measurement itself."""
        self._check_input(y, self.measurement_shape, "y")
        return y


@register("gaussian_blur")
class GaussianBlur(KernelBlur):
    """Gaussian deblurring: std 3.0 px in a 61x61 kernel at 256 px, both scaled with the image."""

    # 32x32: std 1.5 px in a 13x13 kernel (radius int(4 * 1.5 + 0.5) = 6, so nothing is truncated).
    # The scaled paper value (3.0 * 32 / 256 = 0.375 px) barely blurs at all.
    EMBEDDED_DEFAULTS = {"kernel_size": 13, "std": 1.5}

    @classmethod
    def paper_defaults(cls, image_shape):
        h = image_shape[1]
        return {"kernel_size": scale_odd_kernel(61, h), "std": 3.0 * h / 256.0}

    @classmethod
    def _validate(cls, params, image_shape):
        super()._validate(params, image_shape)
        check_number(cls.name, params, "std", lo=0.0, lo_open=True)

    def _make_kernel(self, generator):
        return gaussian_kernel(self.params["kernel_size"], float(self.params["std"]))


@register("motion_blur")
class MotionBlur(KernelBlur):
    """Motion deblurring: a random camera-path kernel (size 61, intensity 0.5 at 256 px) per seed;
    the official repos use one kernel per run, i.e. the same seed on every row."""

    # 32x32: a 9x9 kernel at intensity 0.5 (the paper's 61/256 scaled): paths of a few pixels, a
    # clearly visible blur at this size; stated explicitly so the preset does not move with the rule.
    EMBEDDED_DEFAULTS = {"kernel_size": 9, "intensity": 0.5}

    @classmethod
    def paper_defaults(cls, image_shape):
        return {"kernel_size": scale_odd_kernel(61, image_shape[1]), "intensity": 0.5}

    @classmethod
    def _validate(cls, params, image_shape):
        super()._validate(params, image_shape)
        check_number(cls.name, params, "intensity", lo=0.0, hi=1.0)

    def _make_kernel(self, generator):
        return motion_kernel(self.params["kernel_size"], float(self.params["intensity"]), generator)
