"""Every number a user can set is checked by one rule table; errors name the field and range."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest

from fastrlm import (
    RLM,
    Budget,
    ConfigurationError,
    InvalidSettingError,
    Limits,
    Price,
    PriceTable,
)
from fastrlm._foundation.validate import (
    BATCH_RULES,
    BUDGET_RULES,
    LIMITS_RULES,
    PRICE_RULES,
    SANDBOX_RULES,
    SERVER_RULES,
    Rule,
)
from fastrlm.sandbox import SandboxLimits
from fastrlm.testing import ScriptedLM

NAN, INF = math.nan, math.inf

#: Values no numeric setting accepts, whatever its range.
ALWAYS_BAD: list[Any] = [NAN, INF, -INF, True, False, "3", [1], -1]


def bad_values(rule: Rule) -> list[Any]:
    """What an adversary tries against ``rule``: the always-bad values, a fraction for counts,
    the value just past each bound, and ``None`` where "no limit" is not allowed."""
    values = [v for v in ALWAYS_BAD if not (rule.infinite and v == INF)]
    if rule.kind == "int":
        values += [2.5, 3.0]
    if rule.minimum is not None:
        values.append(rule.minimum - (1 if rule.kind == "int" else 1e-9))
    if rule.above is not None:
        values.append(rule.above)
    if rule.maximum is not None:
        values.append(rule.maximum + 1)
    if not rule.optional:
        values.append(None)
    return values


def cases(rules: dict[str, Rule]) -> list[tuple[str, Any]]:
    return [(name, value) for name, rule in rules.items() for value in bad_values(rule)]


def numeric_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)
            if any(t in str(f.type) for t in ("int", "float"))}


@pytest.mark.parametrize("cls, rules", [(Budget, BUDGET_RULES), (Limits, LIMITS_RULES),
                                        (Price, PRICE_RULES), (SandboxLimits, SANDBOX_RULES)])
def test_every_numeric_field_has_a_rule(cls: type, rules: dict[str, Rule]) -> None:
    # A field added without a rule would accept NaN again: this fails first.
    assert numeric_fields(cls) == set(rules)


@pytest.mark.parametrize(("owner", "rules"), [
    ("Budget", BUDGET_RULES), ("Limits", LIMITS_RULES), ("Price", PRICE_RULES),
    ("batch()", BATCH_RULES), ("RLMServer", SERVER_RULES), ("SandboxLimits", SANDBOX_RULES),
])
def test_every_numeric_setting_has_an_upper_bound(owner: str, rules: dict[str, Rule]) -> None:
    # Limits(max_concurrency=10**9) was accepted: a new field must say where "huge" is a typo.
    unbounded = sorted(name for name, rule in rules.items() if rule.maximum is None)
    assert unbounded == [], f"{owner} fields without an upper bound: {unbounded}"


def test_a_huge_value_is_refused_naming_the_setting_its_range_and_the_fix() -> None:
    with pytest.raises(InvalidSettingError) as info:
        Limits(max_concurrency=10**9)
    message = str(info.value)
    assert message.startswith("Limits.max_concurrency must be an integer >= 1 and <= 4096")
    assert "4096 is the most it takes" in message
    assert "leave it unset for the sub-model provider's default" in message
    with pytest.raises(InvalidSettingError, match=r"86400 is the most it takes"):
        Budget(exec_timeout_s=1e9)
    with pytest.raises(InvalidSettingError, match=r"^Price\.output must be .*<= 100000"):
        Price(1.0, 1e12)


def test_a_huge_child_model_depth_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="child_models depth must be an integer >= 1 "
                                                 "and <= 64"):
        RLM(sub(), child_models={10**6: "scripted/x"})


@pytest.mark.parametrize(("field", "value"), cases(BUDGET_RULES))
def test_budget_rejects_each_bad_value_naming_field_and_range(field: str, value: Any) -> None:
    with pytest.raises(InvalidSettingError) as info:
        Budget(**{field: value})
    message = str(info.value)
    assert message.startswith(f"Budget.{field} must be {BUDGET_RULES[field].describe()}")
    assert info.value.setting == f"Budget.{field}"


@pytest.mark.parametrize(("field", "value"), cases(LIMITS_RULES))
def test_limits_rejects_each_bad_value_naming_field_and_range(field: str, value: Any) -> None:
    with pytest.raises(InvalidSettingError, match=rf"^Limits\.{field} must be "):
        Limits(**{field: value})


@pytest.mark.parametrize(("field", "value"), cases(SANDBOX_RULES))
def test_sandbox_limits_reject_each_bad_value(field: str, value: Any) -> None:
    # SandboxLimits checked nothing: memory_bytes=0 silently meant "sized from the context".
    with pytest.raises(InvalidSettingError, match=rf"^SandboxLimits\.{field} must be "):
        SandboxLimits(**{field: value})


def test_sandbox_timeouts_may_be_infinite() -> None:
    limits = SandboxLimits(exec_timeout_s=INF, hard_grace_s=INF)
    assert limits.exec_timeout_s == INF == limits.hard_grace_s


@pytest.mark.parametrize(("field", "value"), cases(PRICE_RULES))
def test_price_rejects_each_bad_value(field: str, value: Any) -> None:
    fields: dict[str, Any] = {"input": 1.0, "output": 2.0, field: value}
    with pytest.raises(InvalidSettingError, match=rf"^Price\.{field} must be "):
        Price(**fields)


def test_the_issue_s_examples_are_refused() -> None:
    # exec_timeout_s=nan turned off the hard kill: a sleeping cell hung the run forever.
    fractional: Any = 2.5
    for make in (lambda: Budget(exec_timeout_s=NAN), lambda: Budget(max_iterations=fractional),
                 lambda: Limits(max_retries=-3), lambda: Limits(request_timeout_s=-1),
                 lambda: Budget(max_seconds=NAN)):
        with pytest.raises(ValueError):  # also a ValueError, for code that expects one
            make()


def test_invalid_setting_is_a_configuration_error_and_a_value_error() -> None:
    with pytest.raises(InvalidSettingError) as info:
        Budget(max_usd=-1)
    assert isinstance(info.value, ConfigurationError) and isinstance(info.value, ValueError)
    assert info.value.value == -1 and info.value.accepted == BUDGET_RULES["max_usd"].describe()


def test_good_values_pass_unchanged() -> None:
    budget = Budget(max_iterations=1, max_subcalls=0, max_depth=3, max_input_tokens=1,
                    max_output_tokens=1, max_usd=0.01, max_seconds=1, exec_timeout_s=0.5)
    assert budget.max_subcalls == 0 and budget.max_seconds == 1
    assert Limits(max_retries=0, output_chars=200).max_retries == 0
    assert Price(0, 0, cached_input=None).output == 0


def test_ranges_read_as_words() -> None:
    assert BUDGET_RULES["max_iterations"].describe() == "an integer >= 1 and <= 10000"
    assert BUDGET_RULES["max_usd"].describe() == (
        "a finite number > 0 and <= 1000000 (or unset for no limit)")
    assert Rule("int", minimum=1, maximum=8).describe() == "an integer >= 1 and <= 8"


def sub() -> ScriptedLM:
    return ScriptedLM(["FINAL(1)"], model="scripted/root")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"budget": {"max_usd": 1}}, "budget must be a fastrlm.Budget"),
        ({"limits": 3}, "limits must be a fastrlm.Limits"),
        ({"sandbox": "firecracker"}, "sandbox must be one of 'auto'"),
        ({"subcalls": "yes"}, "subcalls must be True or False"),
        ({"cache_sampled": 1}, "cache_sampled must be True or False"),
        ({"child_models": {0: "scripted/x"}}, "child_models depth must be an integer >= 1"),
        ({"child_models": {1.5: "scripted/x"}}, "child_models depth must be an integer >= 1"),
    ],
)
def test_rlm_keyword_arguments_are_checked(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        RLM(sub(), **kwargs)


def test_a_user_price_file_with_a_bad_price_names_the_file_and_the_model(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTRLM_HOME", str(tmp_path))
    path = tmp_path / "prices.json"
    for text, message in [
        ('{"models": {"my-local": {"input": -1, "output": 0}}}', "my-local.input must be"),
        ('{"models": {"my-local": {"input": NaN, "output": 0}}}', "my-local.input must be"),
        ('{"models": {"my-local": {"output": 0}}}', "my-local.input must be"),
        ('{"models": {"my-local": {"inptu": 1, "output": 0}}}', "my-local: expected"),
        ('{"models": {"my-local": 3}}', "my-local: expected"),
        ('{"models": [1]}', "expected"),
        ("not json", "not valid JSON"),
        ('{"models": {"my-local": {"input": ' + "9" * 5000 + ', "output": 0}}}',
         "not valid JSON"),  # past Python's digit limit: a plain ValueError before
    ]:
        path.write_text(text)
        with pytest.raises(ConfigurationError, match=message) as info:
            PriceTable.default()
        assert str(path) in str(info.value)


def test_a_user_price_file_prices_a_local_model_and_overrides_win(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FASTRLM_HOME", str(tmp_path))
    (tmp_path / "prices.json").write_text(
        '{"models": {"openai/my-local": {"input": 0.5, "output": 1, "cached_input": 0.1}}}')
    table = PriceTable.default()
    assert table.price("openai/my-local") == Price(0.5, 1.0, 0.1)
    assert PriceTable.default({"openai/my-local": Price(0, 0)}).price("openai/my-local") == \
        Price(0, 0)
    assert table.price("gpt-5") is not None  # the shipped table is still there
