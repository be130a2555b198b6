"""Classical baselines, registered in ``solvers.SOLVERS`` like every solver (``family="classical"``).

| name | tasks | method | weight (``step_param``) |
|---|---|---|---|
| ``wiener`` | gaussian_blur, motion_blur | Fourier closed-form Tikhonov/Wiener deconvolution | penalty weight |
| ``tikhonov_sr`` | super_resolution | generalised Tikhonov toward bicubic, batched CG | gradient-penalty weight |
| ``biharmonic`` | box / random inpainting | ``skimage.restoration.inpaint_biharmonic`` | none |
| ``tv_pd`` | every linear operator | TV by Chambolle-Pock primal-dual | TV weight |
| ``tv_gd`` | every non-linear operator | Adam on data term + smoothed TV, autograd | TV weight |

They need no diffusion prior (``needs_prior=False``: ``solve`` takes ``prior=None`` and ignores a
given one) and refuse an active EquiReg regularizer. One module per method family; the shared pieces
(registration, option checks, finite differences, TV) are in `common`.
"""
from solvers.classical import biharmonic, tikhonov, tv, wiener  # noqa: F401  (registration)
