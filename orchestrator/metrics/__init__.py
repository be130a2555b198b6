"""Image-quality metrics: a registry of ``MetricInfo`` entries and the engine that runs them.

One module per job: ``registry`` (``MetricInfo``, ``register_metric`` and the queries everything
else derives from), ``weights`` (where network weights files are looked for, the missing-weights
warning), ``pixel`` (PSNR, SSIM), ``learned`` (LPIPS), ``fidelity`` (relative L2, measurement
residual), ``sets`` (FID, KID on Inception features), ``engine`` (``Metrics``). A new metric is one
new module here that calls ``register_metric``: the package imports every module it holds.

Conventions: images arrive as ``(B, C, H, W)`` float tensors in ``value_range`` (the project's
``[-1, 1]``), metrics compute in torch on any device with network weights from local files only
(never downloaded, never faked), and no module here imports torch at import time (see
``registry``).
"""
from orchestrator.metrics import registry
from orchestrator.metrics.registry import MetricInfo, WeightsFile, register_metric
# the built-in metrics, in the store's column order (registration order)
from orchestrator.metrics.pixel import psnr, ssim
from orchestrator.metrics.learned import LPIPS_ALEXNET_FILE, LPIPS_MIN_SIZE, load_lpips
from orchestrator.metrics.fidelity import rel_l2, y_residual
from orchestrator.metrics.sets import (INCEPTION_FILE, fid_from_features, kid_from_features, load_inception,
                                       to_uint8)
from orchestrator.metrics.weights import WEIGHTS_ENV, MissingWeightsWarning, find_weights, weight_search_paths
from orchestrator.metrics.engine import Metrics

registry.discover()  # every other module of this package: metrics added as one new file

#: Live views of the registry by kind: ``{name: MetricInfo}``.
PER_IMAGE_METRICS = registry.KindView("image")
SET_METRICS = registry.KindView("set")
#: What ``Metrics`` computes per image when not told otherwise: every image metric.
DEFAULT_PER_IMAGE = registry.names("image")

__all__ = [
    "psnr", "ssim", "rel_l2", "y_residual", "fid_from_features", "kid_from_features",
    "Metrics", "MissingWeightsWarning", "PER_IMAGE_METRICS", "SET_METRICS", "DEFAULT_PER_IMAGE",
    "LPIPS_ALEXNET_FILE", "LPIPS_MIN_SIZE", "INCEPTION_FILE", "WEIGHTS_ENV", "find_weights", "weight_search_paths",
    "load_lpips", "load_inception", "to_uint8", "registry", "MetricInfo", "WeightsFile", "register_metric",
]
