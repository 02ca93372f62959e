"""Typed options (genlearn.options): conversion of Python and command-line values, one message format, flags."""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import pytest

from genlearn import options
from genlearn.errors import ConfigError
from genlearn.options import option


@dataclass(frozen=True)
class Example:
    hidden: int = option(16, "units", minimum=1)
    sizes: tuple[int, ...] = option((500,), "layer sizes", minimum=1)
    rate: float = option(0.1, "a rate", minimum=0)
    mode: str | None = option(None, "mode", choices=(None, "a", "b"))
    on: bool = option(True, "a switch")
    budget: float | None = option(None, "minutes")
    hidden_flag: int = option(0, "not on the command line", cli=False)


@pytest.mark.parametrize("name,given,expected", [
    ("hidden", "4", 4), ("hidden", 4, 4), ("hidden", 4.0, 4), ("hidden", "4.0", 4),
    ("sizes", "500,250", (500, 250)), ("sizes", 300, (300,)), ("sizes", [7, 8], (7, 8)),
    ("rate", "1e-3", 1e-3), ("rate", 2, 2.0),
    ("mode", "a", "a"), ("mode", "none", None), ("mode", None, None),
    ("on", "no", False), ("on", "true", True), ("on", 1, True),
    ("budget", "2.5", 2.5), ("budget", None, None),
])
def test_values_are_converted_to_the_field_type(name, given, expected):
    got = options.convert(Example, name, given)
    assert got == expected and type(got) is type(expected)


@pytest.mark.parametrize("name,given,message", [
    ("hidden", "x", "--hidden must be an integer, got 'x'"),
    ("hidden", "2.5", "--hidden must be an integer, got '2.5'"),
    ("hidden", True, "--hidden must be an integer, got True"),
    ("hidden", 0, "--hidden must be >= 1, got 0"),
    ("sizes", "500,x", "--sizes must be comma-separated integers"),
    ("sizes", "8 8", "--sizes must be comma-separated integers"),
    ("sizes", "8,,8", "--sizes must be comma-separated integers"),
    ("sizes", ",8", "--sizes must be comma-separated integers"),
    ("sizes", "500,0", "--sizes must be >= 1 (each entry), got 500,0"),
    ("sizes", "0", "--sizes must be >= 1, got 0"),
    ("rate", "inf", "--rate must be a finite number, got 'inf'"),
    ("rate", -1, "--rate must be >= 0, got -1.0"),
    ("mode", "c", "--mode must be one of a, b, got 'c'"),
    ("on", "maybe", "--on must be true or false, got 'maybe'"),
    ("hidden", None, None),
])
def test_bad_values_give_one_message_naming_the_flag(name, given, message):
    if message is None:  # None for a field that is not nullable and has a default: the default is kept by parse
        assert options.parse(Example, {name: given}, "x").hidden == 16
        return
    with pytest.raises(ConfigError) as err:
        options.convert(Example, name, given)
    assert str(err.value).startswith(message)


def test_parse_rejects_unknown_names_and_lists_the_options():
    with pytest.raises(ConfigError, match=r"--depth does not apply to the example \(its options: --hidden, "):
        options.parse(Example, {"depth": 3}, "the example")
    cfg = options.parse(Example, {"hidden": "8", "sizes": "3,2"}, "the example")
    assert (cfg.hidden, cfg.sizes, cfg.rate) == (8, (3, 2), 0.1)
    assert options.to_dict(cfg)["sizes"] == [3, 2]


def test_flags_come_from_the_fields_and_stay_unset_unless_given():
    parser = argparse.ArgumentParser()
    options.add_arguments(parser, Example, "x_", defaults={"rate": 0.5}, owner="family")
    assert vars(parser.parse_args([])) == {}
    args = vars(parser.parse_args(["--hidden", "4", "--no-on", "--sizes", "5,6"]))
    assert args == {"x_hidden": "4", "x_on": False, "x_sizes": "5,6"}
    assert options.parse(Example, {k[2:]: v for k, v in args.items()}, "x").sizes == (5, 6)
    text = parser.format_help()
    assert "--hidden-flag" not in text and "(family default 0.5)" in text and "(default on)" in text


def test_mutable_defaults_are_refused():
    with pytest.raises(TypeError, match="immutable"):
        option([500], "sizes")
