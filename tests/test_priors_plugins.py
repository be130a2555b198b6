"""Issue 17 ("shape"): a prior is a loader kind plus its fields; science comes in through plugins.

Pinned: the config ids and grid hash of ``configs/demo.yaml`` (computed before kinds existed), so
every stored result of a ``prior: embedded`` spec keeps its identity.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
from pydantic import ValidationError

from orchestrator import cli, grid, plugins, spec as spec_mod
from orchestrator.run_identity import grid_hash
from orchestrator.spec_priors import PriorRef, PriorSpec
from tests.support import FAKES

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "configs" / "demo.yaml"


def _ids_and_hash(data) -> tuple[dict, str]:
    spec = spec_mod.parse_sweep(data)
    cfgs = grid.expand(spec)
    by = {(c.solver, c.reg_kind, c.task): c.config_id for c in cfgs}
    return by, grid_hash([c.config_id for c in cfgs], grid.sample_ids(spec))


# ------------------------------------------------------------------------------- identity
def test_demo_config_ids_and_grid_hash_are_pinned():
    """Measured on the code before PriorRef had a kind: changing them orphans every stored demo row."""
    by, ghash = _ids_and_hash(DEMO)
    assert by[("dps", "equi", "box_inpainting")] == "e2cd888ed28d945a"
    assert by[("psld", "none", "gaussian_blur")] == "5bd204dc377e76c4"
    assert ghash == "d20c779044e7f5db"
    data = spec_mod.load_yaml(DEMO.read_text())
    for prior in ({"pixel": "embedded", "latent": {"path": "embedded"}}, {"kind": "embedded"},
                  {"pixel": {"kind": "embedded"}, "latent": "embedded", "mpe": "embedded"}):
        assert _ids_and_hash({**data, "prior": prior})[1] == ghash, prior


def test_plugins_are_not_part_of_identity(monkeypatch):
    data = spec_mod.load_yaml(DEMO.read_text())
    ghash = _ids_and_hash(data)[1]
    assert _ids_and_hash({**data, "plugins": [FAKES]})[1] == ghash
    monkeypatch.setenv(plugins.ENV, FAKES)
    assert _ids_and_hash(data)[1] == ghash


# ------------------------------------------------------------------------------ the forms
def test_prior_shorthands_and_keys():
    s = PriorSpec.model_validate("embedded")
    assert s.pixel.kind == s.latent.kind == "embedded" and s.pixel.key == "embedded" and s.mpe is None
    assert s.pixel.loader_spec("latent") == {"kind": "embedded", "name": "latent"}
    mix = PriorSpec.model_validate("mixture:mog8")
    assert mix.latent.key == "mixture:mog8"
    assert mix.latent.loader_spec("latent") == {"kind": "mixture", "name": "mog8", "space": "latent"}
    assert mix.pixel.info("pixel") == {"image_size": 8, "channels": 1, "files": []}
    ldm = PriorSpec.model_validate({"kind": "diffusers_ldm", "path": "/m/ldm", "scale": 0.5})
    assert ldm.pixel is None and ldm.latent.fields == {"path": "/m/ldm", "scale": 0.5}  # the spaces its kind gives
    assert ldm.latent.key == 'diffusers_ldm:{"path":"/m/ldm","scale":0.5}'
    assert PriorRef.from_key(ldm.latent.key) == ldm.latent and PriorRef.from_key("mixture:mog8") == mix.latent
    legacy = PriorSpec.model_validate({"pixel": {"path": "embedded"}})
    assert legacy.pixel.key == "embedded" and legacy.latent is None
    assert ldm.latent.model_dump() == {"kind": "diffusers_ldm", "path": "/m/ldm", "scale": 0.5}  # as written


@pytest.mark.parametrize("prior,message", [
    ({"pixel": {"path": "/models/ffhq"}}, "a prior needs a kind (got keys ['path']); allowed kinds: 'diffusers_ldm', "
                                          "'diffusers_pixel', 'embedded', "),
    ({"pixel": "/models/ffhq_10m.pt"}, "unknown prior kind '/models/ffhq_10m.pt'; allowed kinds: 'diffusers_ldm'"),
    ({"pixel": {"kind": "diffusers_pixel"}}, "prior kind 'diffusers_pixel' needs ['path']"),
    ({"latent": {"kind": "embedded", "name": "latent"}}, "unknown field(s) ['name'] for prior kind 'embedded' "
                                                         "('name' comes from the prior's slot); allowed: ['root']"),
    ({"pixel": "mixture:"}, "a prior shorthand is '<kind>' or '<kind>:<name>'"),
], ids=["no-kind", "path-string", "missing-path", "slot-key", "bad-shorthand"])
def test_prior_refusals_name_the_field_and_the_allowed_values(prior, message):
    with pytest.raises(ValidationError) as info:
        PriorSpec.model_validate(prior)
    assert message in str(info.value)


def test_a_kinds_space_must_fit_its_slot():
    data = {**spec_mod.load_yaml(DEMO.read_text()), "prior": {"pixel": {"kind": "diffusers_ldm", "path": "/m"},
                                                             "latent": "embedded"}}
    with pytest.raises(spec_mod.SpecError) as info:
        spec_mod.parse(data)
    assert dict(info.value.errors)["prior.pixel"].startswith("kind 'diffusers_ldm' gives a latent prior, but prior.pixel "
                                                             "needs a pixel one; allowed kinds: 'diffusers_pixel'")


def test_kind_info_reads_configs_only(tmp_path):
    from solvers.loaders import prior_info

    latent = prior_info({"kind": "embedded", "name": "latent"})
    assert latent["image_size"] == 32 and latent["channels"] == 3 and all(Path(f).exists() for f in latent["files"])
    guided = prior_info({"kind": "guided_diffusion", "path": tmp_path / "ffhq_10m.pt"})  # no file: nothing read
    assert guided["image_size"] == 256 and guided["files"] == [tmp_path / "ffhq_10m.pt"]
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['bogus'\] for prior kind 'mixture'"):
        prior_info({"kind": "mixture", "name": "mog8", "bogus": 1})


# -------------------------------------------------------------------------------- plugins
def test_env_and_spec_plugins_are_requested_once_in_order(monkeypatch):
    monkeypatch.setenv(plugins.ENV, " a.b , c ,, a.b")
    assert plugins.requested(["c", "d"]) == ["a.b", "c", "d"]
    monkeypatch.delenv(plugins.ENV)
    assert plugins.requested() == []


def test_a_plugin_registers_into_the_real_registries(fakes):
    from operators import OPERATORS
    from solvers import SOLVERS
    from solvers.loaders import PRIOR_LOADERS

    assert SOLVERS["fake"].fn is fakes._fake and OPERATORS["fake_mask"] is fakes.FakeMask
    assert PRIOR_LOADERS["fake"].load is fakes.load_fake_prior and "dps" in SOLVERS


def test_a_plugin_that_does_not_import_is_one_line(tmp_path):
    with pytest.raises(plugins.PluginError) as info:
        plugins.load(["no_such_plugin_mod"])
    assert str(info.value) == "plugins: cannot import 'no_such_plugin_mod' (ModuleNotFoundError: No module named " \
                              "'no_such_plugin_mod')"
    path = tmp_path / "s.yaml"
    path.write_text(DEMO.read_text() + "plugins: [no_such_plugin_mod]\n")
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = cli.main(["plan", str(path)])
    lines = err.getvalue().strip().splitlines()
    assert rc == 2 and lines == [f"equibench plan: error: {info.value}"], err.getvalue()


def test_the_backend_plumbing_is_gone():
    import importlib.util

    assert importlib.util.find_spec("orchestrator.backend") is None
    for argv in (["run", "x.yaml"], ["plan", "x.yaml"], ["tune", "x.yaml", "--out", "o"]):
        assert cli.build_parser(argv[0]).parse_args(argv).command == argv[0]
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
            cli.build_parser(argv[0]).parse_args([*argv, "--backend", "m"])
