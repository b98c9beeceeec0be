"""The scenario schema: defaults, bounds, unknown keys, extends, overrides and error messages."""

from __future__ import annotations

import pytest

from portfolio_sim.errors import ScenarioError
from portfolio_sim.scenario import (GROUPS, Scenario, apply_overrides, build_scenario, load_scenario,
                                    loads_scenario, parse_override, schema_markdown)

EXPECTED_GROUPS = ["district", "autonomy", "governance", "eligibility", "central_office", "accountability",
                   "choice", "talent", "implementation", "politics", "run"]


def test_groups_follow_domain_and_every_field_is_documented():
    assert list(GROUPS) == EXPECTED_GROUPS
    for name, group in GROUPS.items():
        assert group.question, name
        for field_name, field in group.model_fields.items():
            assert field.description and len(field.description) > 10, f"{name}.{field_name}"
            numeric = field.annotation in (int, float)
            if numeric:
                bounds = [m for m in field.metadata if getattr(m, "ge", None) is not None]
                upper = [m for m in field.metadata if getattr(m, "le", None) is not None]
                assert bounds and upper, f"{name}.{field_name} needs bounds"


def test_defaults_are_a_valid_traditional_district():
    s = Scenario()
    assert s.eligibility.schools == "none"
    assert not s.has_autonomy_policy
    assert all(v == 0 for v in s.granted_autonomy().values())


def test_unknown_key_is_an_error_naming_the_field_and_known_fields():
    with pytest.raises(ScenarioError) as err:
        build_scenario({"choice": {"polcy": "unified"}}, "x.toml")
    msg = str(err.value)
    assert "x.toml" in msg and "choice.polcy" in msg and "unknown field" in msg
    assert "policy" in msg  # lists the known fields


def test_out_of_bounds_value_names_path_value_and_allowed_range():
    with pytest.raises(ScenarioError) as err:
        build_scenario({"accountability": {"closure_percentile": 80}}, "s.toml")
    msg = str(err.value)
    assert "accountability.closure_percentile" in msg and "80" in msg and "from 0.0 to 50.0" in msg


def test_bad_choice_lists_allowed_values():
    with pytest.raises(ScenarioError) as err:
        build_scenario({"governance": {"category": "charter"}}, "s.toml")
    assert "'district_run', 'partner_led', 'partner_run'" in str(err.value)


def test_unknown_group_is_an_error():
    with pytest.raises(ScenarioError, match="unknown field"):
        build_scenario({"finances": {"x": 1}}, "s.toml")


def test_extends_merges_and_overrides(tmp_path):
    (tmp_path / "base.toml").write_text('name = "base"\n[district]\nstudents = 5000\nschools = 20\n')
    (tmp_path / "child.toml").write_text('extends = "base.toml"\nname = "child"\n[district]\nschools = 30\n')
    s = load_scenario(tmp_path / "child.toml")
    assert (s.name, s.district.students, s.district.schools) == ("child", 5000, 30)


def test_extends_cycle_is_reported(tmp_path):
    (tmp_path / "a.toml").write_text('extends = "b.toml"\n')
    (tmp_path / "b.toml").write_text('extends = "a.toml"\n')
    with pytest.raises(ScenarioError, match="cycle"):
        load_scenario(tmp_path / "a.toml")


def test_malformed_toml_names_the_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[district\nstudents = 3\n")
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert "bad.toml" in str(err.value) and "TOML" in str(err.value)


def test_missing_file_lists_presets(tmp_path):
    with pytest.raises(ScenarioError, match="no such scenario file or preset"):
        load_scenario(tmp_path / "nope.toml")


def test_overrides_parse_toml_literals_and_bare_words():
    assert parse_override("accountability.closure_percentile=10") == (["accountability", "closure_percentile"], 10)
    assert parse_override("choice.policy=unified") == (["choice", "policy"], "unified")
    assert parse_override("central_office.autonomy_office=true") == (["central_office", "autonomy_office"], True)
    assert parse_override('name="a b"') == (["name"], "a b")
    data = apply_overrides({"choice": {"max_choices": 3}}, ["choice.policy=unified"])
    assert data == {"choice": {"max_choices": 3, "policy": "unified"}}


def test_override_without_equals_is_an_error():
    with pytest.raises(ScenarioError, match="PATH=VALUE"):
        parse_override("accountability.closure_percentile")


def test_override_is_validated(tmp_path):
    (tmp_path / "s.toml").write_text('name = "s"\n')
    with pytest.raises(ScenarioError, match="choice.max_choices"):
        load_scenario(tmp_path / "s.toml", ["choice.max_choices=99"])
    assert load_scenario(tmp_path / "s.toml", ["choice.max_choices=12"]).choice.max_choices == 12


def test_toml_round_trip_is_exact():
    s = Scenario.model_validate({"name": "rt", "choice": {"policy": "unified"}, "autonomy": {"budget": 0.4}})
    assert loads_scenario(s.to_toml()) == s


def test_upload_cannot_extend_a_path():
    with pytest.raises(ScenarioError, match="must name a preset"):
        loads_scenario('extends = "../../etc/passwd"\n')


def test_upload_of_garbage_is_a_clear_error():
    with pytest.raises(ScenarioError, match="not valid TOML"):
        loads_scenario("this is = = not toml")


def test_schema_markdown_lists_every_lever():
    md = schema_markdown()
    for group in GROUPS.values():
        for field_name in group.model_fields:
            assert f"`{field_name}`" in md
