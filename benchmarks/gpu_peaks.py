"""Peak throughput of the data-centre GPUs the GPU benchmark reports against, and a FLOP counter.

Peaks (dense, i.e. without 2:4 structured sparsity; NVIDIA quotes tensor-core figures "with
sparsity", twice these), TFLOP/s:

| device | FP32 (CUDA cores) | TF32 tensor | BF16 tensor | source |
|---|---:|---:|---:|---|
| H200 SXM | 67 | 494.5 | 989.5 | NVIDIA H200 Tensor Core GPU datasheet (nvidia.com/en-us/data-center/h200): 67 / 989* / 1,979* |
| H200 NVL | 60 | 417.5 | 835.5 | same datasheet, NVL column: 60 / 835* / 1,671* |
| H100 SXM | 67 | 494.5 | 989.5 | NVIDIA H100 datasheet (nvidia.com/en-us/data-center/h100): 67 / 989* / 1,979* |
| H100 NVL | 60 | 417.5 | 835.5 | same datasheet, NVL column: 60 / 835* / 1,671* |
| H100 PCIe | 51 | 378 | 756.5 | same datasheet, PCIe column: 51 / 756* / 1,513* |
| A100 (SXM, PCIe) | 19.5 | 156 | 312 | NVIDIA A100 datasheet (nvidia.com/en-us/data-center/a100): 19.5 / 156 (312*) / 312 (624*) |

(* with sparsity.) Which peak a run is held against: bf16 runs the BF16 tensor peak; fp32 runs the
TF32 tensor peak when cuDNN may use TF32 (``torch.backends.cudnn.allow_tf32``, PyTorch's default:
the UNet's convolutions then run on tensor cores), else the FP32 one; both fp32 figures are reported.

FLOPs are counted with the formulas of ``torch.utils.flop_counter`` (matmuls, convolutions,
attention, forward and backward: the ops that carry the arithmetic; elementwise ops and norms are
not counted) by a plain dispatch mode: ``FlopCounterMode`` itself installs module hooks that refuse
``torch.autograd.grad`` on a leaf (measured: "A leaf node was passed to _will_engine_execute_node"),
and every guided solver takes exactly that gradient.
"""
from __future__ import annotations

from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

__all__ = ["PEAKS", "peak_for", "FlopCounter", "count_flops"]

#: device -> TFLOP/s (dense) by precision, with the datasheet it comes from (table above)
PEAKS: dict[str, dict] = {
    "H200 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "source": "NVIDIA H200 datasheet, H200 NVL (sparse/2)"},
    "H200": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "source": "NVIDIA H200 datasheet, H200 SXM (sparse/2)"},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.5, "source": "NVIDIA H100 datasheet, H100 NVL (sparse/2)"},
    "H100 PCIe": {"fp32": 51.0, "tf32": 378.0, "bf16": 756.5, "source": "NVIDIA H100 datasheet, H100 PCIe (sparse/2)"},
    "H100": {"fp32": 67.0, "tf32": 494.5, "bf16": 989.5, "source": "NVIDIA H100 datasheet, H100 SXM (sparse/2)"},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0, "source": "NVIDIA A100 datasheet (dense figures)"},
}


def peak_for(device_name: str | None) -> dict | None:
    """The ``PEAKS`` entry whose key occurs in ``device_name`` (most specific first), else None."""
    if not device_name:
        return None
    name = device_name.upper()
    for key in PEAKS:  # ordered: "H200 NVL" before "H200", "H100 PCIe" before "H100"
        if key.upper() in name:
            return {"device": key, **PEAKS[key]}
    return None


class FlopCounter(TorchDispatchMode):
    """``with FlopCounter() as c: ...`` then ``c.total``: FLOPs of the counted ops run inside."""

    def __init__(self):
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        formula = flop_registry.get(func._overloadpacket)
        if formula is not None:
            self.total += int(formula(*args, **kwargs, out_val=out))
        return out


def count_flops(fn) -> int:
    """FLOPs of one call of ``fn``."""
    with FlopCounter() as counter:
        fn()
    return counter.total
