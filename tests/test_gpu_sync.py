"""No host sync in the sampling loop: every diffusion solver reads no tensor value per step.

Each solver runs on the embedded world with EquiReg on (its group draws, schedule and influence meter
inside the loop) at N and 2N steps while ``tests/support/syncs.count_syncs`` records every tensor
value read by Python (``.item``, ``.tolist``, ``.cpu``, ``.numpy``, ``bool()``, ``float()``, ...):
the counts must be equal, i.e. zero reads per step (setup and the end of a solve read a few).
On CUDA the same loops run under ``torch.cuda.set_sync_debug_mode`` in ``benchmarks/gpu_bench.py``.
"""
from __future__ import annotations

import pytest
import torch

from orchestrator.problem import make_measurement, task_params
from solvers import RegularizerSpec, RowBatch, precision, solve
from solvers.hostflag import StopFlag
from solvers.loaders import load_prior
from solvers.resample import adamw_options
from solvers.rng import make_generators
from tests.support.syncs import count_syncs

#: solver -> (prior space, per-row step size or None for the task default, options keeping it cheap)
CASES = {
    "dps": ("pixel", 0.5, {}),
    "daps": ("pixel", None, {"mcmc_steps": 3}),
    "psld": ("latent", 1.0, {}),
    "latent_daps": ("latent", None, {"mcmc_steps": 3}),
    "resample": ("latent", 1.0, {}),
}


@pytest.fixture(scope="module")
def priors():
    return {"pixel": load_prior("embedded:pixel"), "latent": load_prior("embedded:latent")}


def _syncs(name, prior, autoencoder, steps, prec="fp32"):
    space, step, opts = CASES[name]
    m = make_measurement("embedded", "report", [0, 1], "gaussian_blur", task_params("embedded", "gaussian_blur"), 0.05)
    params = {"lam": torch.tensor([0.0, 0.5])}
    if step is not None:
        params["step_size"] = torch.tensor([step, step])
    batch = RowBatch(y=m.y, operator=m.operator, generators=make_generators([3, 4]), params=params)
    reg = RegularizerSpec(kind="equi", mpe="autoencoder", autoencoder=autoencoder)
    with count_syncs() as log, precision.autocast(prec):
        out = solve(name, prior, batch, steps, regularizer=reg, options=opts)
    assert out.status == ["ok", "ok"]
    return log


@pytest.mark.parametrize("name", sorted(CASES))
def test_zero_host_syncs_per_step(name, priors, one_thread):
    prior = priors[CASES[name][0]]
    ae = priors["latent"].autoencoder
    n3, n6 = _syncs(name, prior, ae, 3), _syncs(name, prior, ae, 6)
    per_step = n6.calls - n3.calls
    assert not per_step, f"{name}: host reads that grow with the steps: {dict(per_step)}"
    assert n6.total == n3.total and n3.total <= 12  # a handful, all in setup / the end of solve
    if name == "resample":  # its early-stop poll is the only per-iteration read, and only in hostflag
        assert sum(n6.polls.values()) > sum(n3.polls.values()) > 0
        assert all(site.startswith("solvers/hostflag.py") for site in n6.polls)
    else:
        assert not n6.polls and not n6.host_state


def test_zero_host_syncs_per_step_with_bf16_networks(priors, one_thread):
    pix, lat = priors["pixel"], priors["latent"]
    precision.prepare(pix), precision.prepare(lat)
    for name in ("dps", "latent_daps"):
        prior = pix if CASES[name][0] == "pixel" else lat
        n3, n6 = (_syncs(name, prior, lat.autoencoder, n, "bf16") for n in (3, 6))
        assert not (n6.calls - n3.calls), (name, dict(n6.calls - n3.calls))


class _Event:
    """A CUDA event stand-in: ``query()`` says whether the copy behind it has landed."""

    landed = False

    def record(self):
        pass

    def query(self):
        return _Event.landed


def test_stop_flag_never_waits_for_the_device():
    _Event.landed = False
    flag = StopFlag("cpu", event_factory=_Event)  # the CUDA protocol, with a fake event
    assert flag.deferred
    flag.post(torch.tensor(True))
    with count_syncs() as log:
        assert flag.done() is False  # the copy has not landed: no read, "not yet"
    assert log.total == 0 and not log.polls
    flag.post(torch.tensor(False))  # a copy is in flight: nothing new is posted
    _Event.landed = True
    assert flag.done() is True  # the first copy (True) landed and is read
    direct = StopFlag("cpu")
    assert not direct.deferred and direct.done() is False
    direct.post(torch.tensor(False))
    assert direct.done() is False
    direct.post(torch.tensor(True))
    assert direct.done() is True


def test_adamw_keeps_its_step_counter_on_cuda_devices():
    assert adamw_options(torch.device("cuda")) == {"capturable": True}
    assert adamw_options(torch.device("cpu")) == {}


def test_group_draws_stay_on_the_generators_device_and_match_the_old_draws():
    from operators import build_group

    group = build_group("hflip_rot90", sample="all")
    pool = torch.tensor(group.pool)
    old = [int(torch.randint(len(pool), (1,), generator=g)) for g in make_generators([1, 2, 3, 4, 5])]  # the old rule
    gens = make_generators([1, 2, 3, 4, 5])
    with count_syncs() as log:
        g = group.sample(gens)
    assert log.total == 0 and g.device == gens[0].device
    assert g.tolist() == pool[old].tolist()  # the same elements as before, drawn without a read-back
