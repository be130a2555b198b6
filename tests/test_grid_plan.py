"""Grid expansion and planning: stable ids, baseline dedupe, lambda-grid units, resume planning."""
from __future__ import annotations

from orchestrator import grid, plan, spec as spec_mod
from tests.support import FAKES as FAKE


def make(**over):
    d = {"name": "g", "prior": "fake", "plugins": [FAKE], "dataset": {"count": 5},
         "tasks": [{"operator": "fake_mask", "sigma_y": [0.05, 0.1]}],
         "solvers": [{"name": "fake", "num_steps": [2, 4], "step_sizes": [1.0, 2.0]}],
         "regularizers": [{"kind": "none", "lambdas": [0, 1, 2]}, {"kind": "equi", "lambdas": [0.1, 0.2, 0.3]}],
         "seeds": [0, 1], "batch_size": 7}
    d.update(over)
    return spec_mod.parse(d)


def test_grid_size_and_baseline_dedupe():
    cfgs = grid.expand(make())
    # sigma 2 x steps 2 x sizes 2 x seeds 2 x (baseline 1 + equi 3): the baseline is not x lambdas
    assert len(cfgs) == 2 * 2 * 2 * 2 * 4
    base = [c for c in cfgs if c.reg_kind == "none"]
    assert {c.lam for c in base} == {0.0} and all(c.group is None and c.mpe_prior is None for c in base)
    assert all(c.mpe_prior == "fake" for c in cfgs if c.reg_kind == "equi")
    assert len({c.config_id for c in cfgs}) == len(cfgs)


def test_config_id_stable_and_order_independent():
    a = {c.config_id for c in grid.expand(make())}
    b = {c.config_id for c in grid.expand(make(regularizers=[{"kind": "equi", "lambdas": [0.3, 0.2, 0.1]},
                                                            {"kind": "none"}], batch_size=3))}
    assert a == b
    c = grid.expand(make())[0]
    assert c.config_id == grid.stable_hash(c.canonical()) and len(c.config_id) == 16
    # a pinned id: changing how ids are computed silently orphans every stored result
    one = grid.Config(prior_space="pixel", prior="embedded", mpe_prior=None, dataset="embedded", split="val",
                      solver="dps", solver_options={}, num_steps=10, step_size=1.0, task="box_inpainting",
                      operator="box_inpainting", op_params={}, sigma_y=0.05)
    assert one.config_id == "774ecd8042baaf79"


def test_seeds_paired_across_configs():
    cfgs = grid.expand(make())
    x, y = [c for c in cfgs if c.sigma_y == 0.05 and c.seed == 0][:2]
    assert x.config_id != y.config_id
    assert grid.operator_seed(x, 3) == grid.operator_seed(y, 3)  # same mask for every config
    assert grid.noise_seed(x, 3) == grid.noise_seed(y, 3)
    assert grid.solver_seed(x, 3) != grid.solver_seed(y, 3)
    z = next(c for c in cfgs if c.seed == 1 and c.sigma_y == 0.05)
    assert grid.operator_seed(z, 3) != grid.operator_seed(x, 3)


def test_plan_groups_lambdas_and_respects_batch_size():
    s = make()
    cfgs = grid.expand(s)
    samples = grid.sample_ids(s)
    units = plan.plan(cfgs, samples, s.batch_size)
    assert all(1 <= u.size <= 7 for u in units)
    keys = [(r.config_id, r.sample_id) for u in units for r in u.rows]
    assert len(keys) == len(set(keys)) == len(cfgs) * len(samples)
    # lambdas, step sizes and seeds of the same group share units
    shared = [u for u in units if len({r.lam for r in u.rows}) > 1]
    assert shared and all(len({(c.solver, c.num_steps, c.sigma_y, c.reg_kind) for c in u.configs.values()}) == 1
                          for u in units)
    assert {u.unit_id for u in units} == {u.unit_id for u in plan.plan(cfgs, samples, s.batch_size)}


def test_plan_skips_done_rows():
    s = make()
    cfgs = grid.expand(s)
    samples = grid.sample_ids(s)
    done = {(c.config_id, i) for c in cfgs[:10] for i in samples}
    units = plan.plan(cfgs, samples, 4, done)
    keys = {(r.config_id, r.sample_id) for u in units for r in u.rows}
    assert keys.isdisjoint(done) and len(keys) == (len(cfgs) - 10) * len(samples)
    assert plan.plan(cfgs, samples, 4, {(c.config_id, i) for c in cfgs for i in samples}) == []


def test_task_step_sizes_replace_the_solver_step_sizes_for_their_task():
    """Reference: the spec's own numbers. A task listed in ``task_step_sizes`` runs those step sizes
    only; other tasks run ``step_sizes``; an unknown task label is a spec error naming the labels."""
    tasks = [{"operator": "fake_mask", "sigma_y": [0.05]}, {"operator": "fake_mask", "name": "second", "sigma_y": [0.05]}]
    s = make(tasks=tasks, seeds=[0], regularizers=[{"kind": "none"}],
             solvers=[{"name": "fake", "num_steps": [2], "step_sizes": [1.0], "task_step_sizes": {"second": [0.25, 0.5]}}])
    got = sorted((c.task, c.step_size) for c in grid.expand(s))
    assert got == [("fake_mask", 1.0), ("second", 0.25), ("second", 0.5)]
    import pytest

    with pytest.raises(spec_mod.SpecError) as exc:
        make(solvers=[{"name": "fake", "num_steps": [2], "task_step_sizes": {"nope": 1.0}}])
    assert "unknown task(s) ['nope']" in dict(exc.value.errors)["solvers[0].task_step_sizes"]
    with pytest.raises(spec_mod.SpecError):
        make(solvers=[{"name": "fake", "num_steps": [2], "task_step_sizes": {"fake_mask": [-1.0]}}])


def test_shared_solver_noise_pairs_lambdas_and_keeps_default_ids():
    """Reference: the seeding rule (``grid.solver_seed``). ``solver_noise: shared`` gives the
    baseline and every lambda/regularizer of one solver setting the same solver stream, other step
    sizes another (the default); ``per_config`` keeps per-config streams and the ids of configs stored
    before shared noise existed."""
    per = grid.expand(make(seeds=[0], solver_noise="per_config"))
    shared = grid.expand(make(seeds=[0]))  # shared is the default (paired comparisons)
    assert {c.config_id for c in per}.isdisjoint({c.config_id for c in shared})
    one = dict(sigma_y=0.05, num_steps=2, step_size=1.0)
    pick = lambda cfgs: [c for c in cfgs if all(getattr(c, k) == v for k, v in one.items())]  # noqa: E731
    seeds_shared = {grid.solver_seed(c, 3) for c in pick(shared)}
    assert len(pick(shared)) == 4 and len(seeds_shared) == 1  # baseline + 3 lambdas share one stream
    assert len({grid.solver_seed(c, 3) for c in pick(per)}) == 4
    other = [c for c in shared if c.step_size == 2.0 and c.sigma_y == 0.05 and c.num_steps == 2]
    assert grid.solver_seed(other[0], 3) not in seeds_shared
    assert "solver_noise" not in per[0].canonical() and shared[0].canonical()["solver_noise"] == "shared"


def test_mpe_and_step_size_defaults_are_the_shared_rule():
    """Reference: ``orchestrator.defaults`` (the EquiReg authors' recipes: encoder for pixel
    solvers, decoder for latent ones, autoencoder for equicon); an omitted step size is the
    solver's own registry default, the value ``equibench solve --no-tuned`` uses."""
    from orchestrator.defaults import default_mpe

    cfgs = grid.expand(make(solvers=[{"name": "fake", "num_steps": [2]}],
                            regularizers=[{"kind": "equi", "lambdas": [0.1]}, {"kind": "equicon", "lambdas": [0.1]}]))
    by_kind = {c.reg_kind: c for c in cfgs}
    assert by_kind["equi"].mpe == default_mpe("pixel", "equi") == "encoder"
    assert by_kind["equicon"].mpe == "autoencoder" and default_mpe("latent", "equi") == "decoder"
    assert {c.step_size for c in cfgs} == {1.0}  # the fake solver has no step option: 1.0


def test_solver_tasks_restrict_the_grid():
    """A solver with ``tasks`` runs only those tasks (classical baselines support some operators)."""
    spec = make(tasks=[{"operator": "fake_mask", "sigma_y": [0.05]}, {"operator": "fake_mask", "name": "other"}],
                solvers=[{"name": "fake", "num_steps": [2], "tasks": ["other"]}])
    assert {c.task for c in grid.expand(spec)} == {"other"}


def test_solver_lambdas_replace_the_regularizers_lambdas_for_that_solver():
    spec = make(solvers=[{"name": "fake", "num_steps": [2]}],
                regularizers=[{"kind": "equi", "lambdas": [0.1], "solver_lambdas": {"fake": [3.0, 30.0]}}])
    assert {c.lam for c in grid.expand(spec)} == {3.0, 30.0}


def test_classical_baselines_run_once_without_regularizer():
    """Real registries: a classical solver gets only the ``none`` cell, diffusion solvers every cell."""
    spec = spec_mod.parse({"name": "g", "prior": "embedded", "dataset": {"count": 2},
                           "tasks": [{"operator": "gaussian_blur"}],
                           "solvers": [{"name": "dps", "num_steps": [2]}, {"name": "wiener", "num_steps": [1]}],
                           "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1, 1.0]}]})
    cfgs = grid.expand(spec)
    assert sorted((c.solver, c.reg_kind) for c in cfgs) == [("dps", "equi"), ("dps", "equi"), ("dps", "none"),
                                                          ("wiener", "none")]
    wiener = next(c for c in cfgs if c.solver == "wiener")
    from orchestrator.defaults import default_step_size
    from solvers import SOLVERS

    # the shared default: the tuned weight of configs/tuned.yaml, else the registry's
    assert wiener.step_size == default_step_size("wiener", SOLVERS["wiener"], "gaussian_blur", embedded=True)


# ------------------------------------------------------------- counting without expanding
def _expanded_counts(spec):
    """configs, units and rows per (solver, steps) the slow way: expand + plan."""
    cfgs = grid.expand(spec)
    samples = grid.sample_ids(spec)
    units = plan.plan(cfgs, samples, spec.batch_size)
    todo: dict = {}
    for u in units:
        for r in u.rows:
            c = u.configs[r.config_id]
            todo[(c.solver, c.num_steps)] = todo.get((c.solver, c.num_steps), 0) + 1
    return len(cfgs), len(units), todo


def _assert_count_matches(spec):
    from orchestrator import grid_count, guards

    n, units, todo = _expanded_counts(spec)
    got = grid_count.count(spec, len(grid.sample_ids(spec)))
    assert (got.configs, got.units, got.todo_by) == (n, units, todo)
    assert guards.grid_size(spec) == n


def test_count_equals_expand_on_the_base_grid_and_its_variants():
    """The fast count (``grid_count``) against ``len(grid.expand)`` and ``plan.plan``'s units on grids
    that exercise every rule of ``expand``."""
    two_tasks = [{"operator": "fake_mask", "sigma_y": [0.05, 0.1]},
                 {"operator": "fake_mask", "name": "second", "sigma_y": [0.05], "params": {"keep": 0.3}}]
    variants = [
        {},
        # duplicate `none` entries and a duplicate equi entry with overlapping lambdas: deduplicated
        {"regularizers": [{"kind": "none"}, {"kind": "none", "lambdas": [5]}, {"kind": "equi", "lambdas": [0.1, 0.2]},
                          {"kind": "equi", "lambdas": [0.2, 0.3]}, {"kind": "equi", "lambdas": [0.3], "group": "identity"}]},
        # repeated values inside lists
        {"seeds": [0, 0, 1], "tasks": [{"operator": "fake_mask", "sigma_y": [0.05, 0.05, 0.1]}]},
        # solver `tasks` restriction, task_step_sizes, solver_lambdas, two solvers
        {"tasks": two_tasks,
         "solvers": [{"name": "fake", "num_steps": [2, 4], "step_sizes": [1.0], "task_step_sizes": {"second": [0.25, 0.5]}},
                     {"name": "fake_latent", "num_steps": [3], "tasks": ["second"]}],
         "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1], "solver_lambdas": {"fake_latent": [1, 2, 3]}}]},
        # the same solver twice (overlapping step counts and sizes): the union of the two entries
        {"solvers": [{"name": "fake", "num_steps": [2, 4], "step_sizes": [1.0, 2.0]},
                     {"name": "fake", "num_steps": [4, 8], "step_sizes": [2.0, 3.0]}]},
        # default step size (none given), equicon, shared vs per-config solver noise, batch sizes
        {"solvers": [{"name": "fake", "num_steps": [2]}], "solver_noise": "per_config", "batch_size": 1,
         "regularizers": [{"kind": "equi", "lambdas": [0.1, 1]}, {"kind": "equicon", "lambdas": [0.1]}]},
        {"batch_size": 1000, "dataset": {"ids": [3, 1, 7]}},
    ]
    for over in variants:
        _assert_count_matches(make(**over))


def test_count_with_more_boxes_than_inclusion_exclusion_takes():
    from orchestrator import grid_count

    regs = [{"kind": "equi", "lambdas": [i * 0.1, (i + 1) * 0.1, 5.0]} for i in range(grid_count.MAX_BOXES + 2)]
    _assert_count_matches(make(regularizers=[{"kind": "none"}] * 3 + regs, seeds=[0], batch_size=3))


def test_count_equals_expand_with_classical_solvers():
    """Real registries: classical solvers run once, without a regularizer, on the tasks they support."""
    spec = spec_mod.parse({"name": "g", "prior": "embedded", "dataset": {"count": 3}, "batch_size": 4,
                           "tasks": [{"operator": "gaussian_blur", "sigma_y": [0.05, 0.1]}, {"operator": "box_inpainting"}],
                           "solvers": [{"name": "dps", "num_steps": [2, 3]}, {"name": "wiener", "num_steps": [1], "tasks": ["gaussian_blur"]},
                                       {"name": "tv_pd", "num_steps": [5], "step_sizes": [0.1, 0.2]}],
                           "regularizers": [{"kind": "none"}, {"kind": "equi", "lambdas": [0.1, 1.0]}]})
    _assert_count_matches(spec)


def test_grid_size_refuses_a_huge_grid_before_expanding(monkeypatch):
    """10^7 configs: counted and refused in well under a second, ``expand`` never called."""
    import time

    import pytest

    from orchestrator import guards

    monkeypatch.setattr(grid, "expand", lambda *a, **k: pytest.fail("expanded"))
    spec = make(seeds=list(range(1000)), regularizers=[{"kind": "none"}, {"kind": "equi", "lambdas": [i / 10 for i in range(1249)]}],
                solvers=[{"name": "fake", "num_steps": [2, 4], "step_sizes": [1.0, 2.0]}])
    t0 = time.perf_counter()
    with pytest.raises(guards.GuardError, match="10,000,000 configs"):
        guards.check_grid_size(spec)
    assert time.perf_counter() - t0 < 5.0
    assert guards.check_grid_size(spec, force=True) == 10_000_000
