"""The spec's ``compute`` section: how the networks run, not what is computed (bar precision).

```yaml
compute:
  precision: bf16        # fp32 (default) | bf16 | fp16: autocast for the prior's network and the MPE function
  compile: false         # false (default) | true (= inductor) | inductor | aot_eager | eager | cudagraphs
  channels_last: false   # the networks' weights and inputs in channels_last memory format
  max_batch: auto        # null (default) | an int >= 1 | auto: rows per solver call
```

- ``precision`` changes results (within the tolerance ``tests/test_gpu_precision.py`` states), so it
  is part of every config's identity: a ``bf16`` config gets another ``config_id`` than its ``fp32``
  twin, and ``fp32`` (the default) leaves every id as it was (``orchestrator.grid.Config``). The
  metrics always run in float32 (``solvers.precision``).
- ``compile``, ``channels_last`` and ``max_batch`` change how fast rows are computed, not their
  values (rows are independent of their batch), so they are the actors' settings only.
- ``max_batch``: ``null``: one solver call per work unit of ``batch_size`` rows, as before; an int
  ``N``: units of ``max(batch_size, N)`` rows solved in calls of at most ``N`` rows; ``auto``: units of
  ``max(batch_size, AUTO_UNIT_ROWS)`` rows, each actor finding the largest call that fits its device
  (``orchestrator.gpu_batch``: the whole unit first, then a bisection of one-step probes on
  ``torch.cuda.OutOfMemoryError``, remembered per solver setting). With an int or ``auto`` an
  out-of-memory call is split in half and retried instead of failing its unit.

The defaults leave a spec's canonical form (its run record, a tune run's id) unchanged: the section
is left out of it while it holds only defaults (``SweepSpec.canonical``).
"""
from __future__ import annotations

from typing import Any, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator


#: rows a work unit holds under ``max_batch: auto`` (unless ``batch_size`` is larger)
AUTO_UNIT_ROWS = 256


class ComputeSpec(BaseModel):
    """How the networks run: precision, torch.compile, memory format and rows per solver call."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast dtype of the prior's network and the MPE function; metrics stay fp32; "
                            "part of the config id when not fp32")
    compile: Optional[str] = Field(None, description="torch.compile backend of the networks (true = inductor); "
                                                     "null/false: not compiled")
    channels_last: bool = Field(False, description="networks and their 4-D inputs in channels_last memory format")
    max_batch: Optional[Union[int, Literal["auto"]]] = Field(
        None, description="rows per solver call: null = a whole unit of batch_size rows; N: at most N (units of "
                          f"max(batch_size, N) rows); auto: the largest that fits the device (units of "
                          f"max(batch_size, {AUTO_UNIT_ROWS}) rows)")

    @field_validator("compile", mode="before")
    @classmethod
    def _compile(cls, v):
        if v is True:
            return "inductor"
        if v is False or v is None:
            return None
        from solvers.precision import COMPILE_BACKENDS  # lazily: spec parsing and --help import no torch

        if not isinstance(v, str) or v not in COMPILE_BACKENDS:
            raise ValueError(f"{v!r} is not a torch.compile backend; allowed: false, true (= inductor), "
                             + ", ".join(repr(b) for b in COMPILE_BACKENDS))
        return v

    @field_validator("max_batch", mode="before")
    @classmethod
    def _max_batch(cls, v: Any):
        ok = v is None or v == "auto" or (isinstance(v, int) and not isinstance(v, bool) and v >= 1)
        if not ok:
            raise ValueError(f"{v!r} is not allowed; allowed: null, an integer >= 1, 'auto'")
        return v

    @property
    def is_default(self) -> bool:
        return self == ComputeSpec()

    def unit_rows(self, batch_size: int) -> int:
        """Rows per work unit (planning): ``batch_size``, or more with ``max_batch`` (module doc)."""
        if self.max_batch is None:
            return int(batch_size)
        bound = AUTO_UNIT_ROWS if self.max_batch == "auto" else int(self.max_batch)
        return max(int(batch_size), bound)

    def actor_options(self) -> dict:
        """What a worker actor needs (``orchestrator.worker.WorkerCore(compute=...)``)."""
        return {"compile": self.compile, "channels_last": self.channels_last, "max_batch": self.max_batch}

