from __future__ import annotations

import inspect

import numpy as np
import pytest

from iclopt.attribution import ATTRIBUTORS
from iclopt.bandits import OPTIMIZERS
from iclopt.errors import InputDataError
from iclopt.params import Interval, Options, check_parameters, json_parameter, parameter_names
from iclopt.selectors import SELECTORS

COMPONENTS = [(reg, name) for reg in (OPTIMIZERS, SELECTORS, ATTRIBUTORS) for name in reg.names()]


def test_intervals_take_numbers_of_their_kind_within_the_bounds_and_never_bools():
    count = Interval(int, 1, None)
    assert 1 in count and np.int64(3) in count
    assert 0 not in count and 1.0 not in count and True not in count and None not in count
    share = Interval(float, 0, 1, closed="left")
    assert 0 in share and 0.5 in share and np.float32(0.5) in share
    assert 1 not in share and False not in share and "0.5" not in share
    assert 0 not in Interval(float, 0, None, closed="neither")
    assert str(count) == "an int in [1, inf)"
    assert str(share) == "a float in [0, 1)"
    assert str(Interval(float, 0, None, closed="neither")) == "a float in (0, inf)"
    with pytest.raises(ValueError):
        Interval(str, 0, 1)


def test_intervals_hold_finite_numbers_only():
    for x in (float("nan"), float("inf"), -float("inf"), np.float64("nan")):
        assert x not in Interval(float, None, None)
    assert float("inf") not in Interval(float, 0, None) and 1e300 in Interval(float, 0, None)


def test_options_take_one_of_their_strings():
    rank = Options("auto", "self", "test")
    assert "self" in rank and "x" not in rank and None not in rank and 1 not in rank
    assert str(rank) == "'auto', 'self' or 'test'" and str(Options("a")) == "'a'"
    with pytest.raises(InputDataError) as err:
        check_parameters("Toy", {"rank_by": [rank]}, {"rank_by": "best"})
    assert str(err.value) == (
        "The 'rank_by' parameter of Toy must be 'auto', 'self' or 'test'. Got 'best' instead."
    )
    with pytest.raises(ValueError):
        Options()


def test_parameter_errors_share_one_message_format():
    rules = {"n": [Interval(int, 1, None), None], "flag": [bool], "name": [str, None]}
    check_parameters("Toy", rules, {"n": None, "flag": True, "name": "x", "other": -1})
    with pytest.raises(InputDataError) as err:
        check_parameters("Toy", rules, {"n": 0})
    assert str(err.value) == (
        "The 'n' parameter of Toy must be an int in [1, inf) or None. Got 0 instead."
    )
    with pytest.raises(InputDataError, match=r"'flag' parameter of Toy must be a bool\. Got 1"):
        check_parameters("Toy", rules, {"flag": 1})
    with pytest.raises(InputDataError, match=r"must be a str or None\. Got 2 instead"):
        check_parameters("Toy", rules, {"name": 2})


def test_parameter_names_and_json_forms():
    class Toy:
        def __init__(self, a: int = 1, *, b: tuple[int, ...] = (), **rest: int) -> None: ...

    assert parameter_names(Toy) == ["a", "b"]
    assert json_parameter((np.int64(1), np.float64(0.5), np.bool_(True))) == [1, 0.5, True]
    assert type(json_parameter(np.float32(0.5))) is float


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_declared_constraint_names_a_constructor_argument(name):
    cls = OPTIMIZERS.get(name)
    constraints = cls.parameter_constraints()
    assert "k" in constraints and set(constraints) <= set(parameter_names(cls))
    check_parameters(cls.__name__, constraints, cls().config())  # the defaults are valid


@pytest.mark.parametrize(
    ("registry", "name"), COMPONENTS, ids=[f"{r.kind}:{n}" for r, n in COMPONENTS]
)
def test_every_component_declares_constraints_its_defaults_satisfy(registry, name):
    cls = registry.get(name)
    assert cls.name == name
    constraints = cls.parameter_constraints()
    assert set(constraints) <= set(parameter_names(cls))
    params = inspect.signature(cls.__init__).parameters.values()
    defaults = {p.name: p.default for p in params if p.default is not p.empty}
    check_parameters(cls.__name__, constraints, defaults)
