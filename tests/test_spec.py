"""Spec validation: every invalid-spec class fails before any compute, naming field and allowed values.

``tests/bad_specs/*.yaml`` is the corpus: each file's first line is ``# error: <text>`` and parsing
must raise a SpecError (or ValueError) containing that text. Checked against the real registries.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator import spec as spec_mod

BAD = sorted((Path(__file__).parent / "bad_specs").glob("*.yaml"))
from tests.support import FAKES as FAKE


def expected_error(path: Path) -> str:
    first = path.read_text().splitlines()[0]
    assert first.startswith("# error: "), f"{path.name}: first line must be '# error: ...'"
    return first[len("# error: "):].strip()


def test_corpus_size():
    assert len(BAD) >= 25


@pytest.mark.parametrize("path", BAD, ids=[p.stem for p in BAD])
def test_bad_spec_corpus(path, monkeypatch):
    import solvers.loaders

    def no_load(*a, **k):
        raise AssertionError("a model was loaded during validation")

    monkeypatch.setattr(solvers.loaders, "load_prior", no_load)
    with pytest.raises(ValueError) as info:
        spec_mod.parse(path)
    assert expected_error(path) in str(info.value)


def _good(**over):
    d = {"name": "ok", "prior": "fake", "plugins": [FAKE], "dataset": {"count": 2},
         "tasks": [{"operator": "fake_mask"}], "solvers": [{"name": "fake", "num_steps": 2}],
         "regularizers": [{"kind": "equi", "lambdas": [0.5]}]}
    d.update(over)
    return d


def test_valid_spec_and_shorthands():
    s = spec_mod.parse(_good())
    assert s.solvers[0].num_steps == [2] and s.tasks[0].sigma_y == [0.05]
    assert s.prior.pixel.kind == s.prior.latent.kind == "fake" and s.prior.pixel.key == "fake"
    assert s.batch_size == 16 and s.resources.num_cpus == 0.5


def test_errors_are_all_reported_with_fields():
    with pytest.raises(spec_mod.SpecError) as info:
        spec_mod.parse(_good(solvers=[{"name": "nope", "num_steps": 2}],
                             tasks=[{"operator": "fake_square"}], regularizers=[{"kind": "equi", "group": "g"}]))
    fields = [f for f, _ in info.value.errors]
    assert fields == ["solvers[0].name", "regularizers[0].group"]
    msg = str(info.value)
    # the plugin's solvers sit in the real registry beside the real ones
    assert "'dps', 'fake', 'fake_latent', 'fake_transpose'" in msg
    assert "allowed: 'hflip', 'hflip_rot90', 'identity', 'rot90'" in msg


def test_transpose_and_space_checks_with_fake_registry():
    with pytest.raises(spec_mod.SpecError, match=r"'fake_transpose' needs operator.transpose but tasks\[0\]"):
        spec_mod.parse(_good(tasks=[{"operator": "fake_square"}], solvers=[{"name": "fake_transpose", "num_steps": 1}]))
    with pytest.raises(spec_mod.SpecError, match="'fake_latent' is a latent-space solver"):
        spec_mod.parse(_good(prior={"pixel": "fake"}, solvers=[{"name": "fake_latent", "num_steps": 1}],
                             regularizers=[{"kind": "none"}]))
    with pytest.raises(spec_mod.SpecError, match="'fake:size64' takes 64x64 images but dataset 'embedded' has 32x32"):
        spec_mod.parse(_good(prior={"pixel": "fake:size64", "latent": "fake"}))
    with pytest.raises(spec_mod.SpecError, match=r"fake_mask: keep must be in \(0, 1\]"):
        spec_mod.parse(_good(tasks=[{"operator": "fake_mask", "params": {"keep": 2}}]))


def test_yaml_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="spec file not found"):
        spec_mod.parse(tmp_path / "missing.yaml")
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(spec_mod.SpecError, match="<yaml>"):
        spec_mod.parse(bad)


@pytest.mark.parametrize("cfg", ["smoke.yaml", "demo.yaml"])
def test_shipped_configs_parse_their_shape(cfg):
    """The shipped configs are well-formed (registry checks need the real packages and weights)."""
    import yaml

    data = yaml.safe_load((Path(__file__).parents[1] / "configs" / cfg).read_text())
    s = spec_mod.SweepSpec.model_validate(data)
    assert s.name == cfg.split(".")[0]
