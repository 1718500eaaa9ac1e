"""One contract suite over the valuation's learning models, in river's terms (issue 18, item 5).

river's models learn and answer one plain dict at a time (``learn_one`` / ``predict_one`` /
``score_one``), keep their parameters under the constructor's names (``_get_params``, ``clone``),
and take a seed where they draw random numbers. The valuer relies on each of these: a checkpoint
is a pickle, a replay must reproduce the stream's values, and a feature the profile does not know
(another operator's feed) must change nothing. The models:

- ``forecaster``: :class:`monitor.forecast.SeasonalLevel`, the activity forecaster (a regressor over
  ``{"slot", "base"}``);
- ``anomaly``: ``FixedScaler | HalfSpaceTrees`` as the valuer builds it (a river pipeline over the
  window's features, scored by ``score_one``).

The quality levels are exponentially weighted means inside :class:`monitor.valuation.AssetValuer`,
not a model with its own state; the valuer's own replay and checkpoint tests cover them.
"""

from __future__ import annotations

import copy
import inspect
import pickle
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor.forecast import SeasonalLevel
from monitor.profiles import get_profile
from monitor.valuation import FixedScaler, ValuationParams, window_anomaly_detector

PROFILE = get_profile("bus_dispatch")


@dataclass(frozen=True)
class Spec:
    """How the suite drives one model: build it (with a seed), learn one example, ask it one answer."""

    name: str
    make: Callable[[int], Any]
    learn: Callable[[Any, dict[str, Any], float], None]
    answer: Callable[[Any, dict[str, Any]], float]
    examples: Callable[[int], list[tuple[dict[str, Any], float]]]


def forecaster_examples(seed: int, n: int = 300) -> list[tuple[dict[str, Any], float]]:
    """A day-shaped activity series (24 hourly slots) with Poisson-like noise and a few outliers."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        slot = i % 24
        base = 2.0 + 18.0 * (6 <= slot <= 22)
        y = max(0.0, rng.gauss(base, base**0.5)) * (0.2 if rng.random() < 0.03 else 1.0)
        out.append(({"slot": slot, "base": base}, y))
    return out


def anomaly_examples(seed: int, n: int = 200) -> list[tuple[dict[str, Any], float]]:
    """Window features inside the profile's limits, with a few far outside them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        x = {name: rng.uniform(lo, hi) for name, (lo, hi) in PROFILE.feature_limits.items()}
        if i % 50 == 49:
            x = {name: hi * 3 for name, (lo, hi) in PROFILE.feature_limits.items()}
        out.append((x, 0.0))
    return out


SPECS = [
    Spec(
        "forecaster",
        make=lambda seed: SeasonalLevel(alpha=0.05, gamma=0.2),  # deterministic: draws no random numbers
        learn=lambda m, x, y: m.learn_one(x, y),
        answer=lambda m, x: m.predict_one(x),
        examples=forecaster_examples,
    ),
    Spec(
        "anomaly",
        make=lambda seed: FixedScaler(PROFILE.feature_limits) | window_anomaly_detector(ValuationParams(seed=seed)),
        learn=lambda m, x, y: m.learn_one(x),
        answer=lambda m, x: m.score_one(x),
        examples=anomaly_examples,
    ),
]
IDS = [s.name for s in SPECS]


def run(spec: Spec, model: Any, examples: list[tuple[dict[str, Any], float]]) -> list[float]:
    """Answer each example before learning it (progressive validation); returns the answers."""
    answers = []
    for x, y in examples:
        answers.append(spec.answer(model, x))
        spec.learn(model, x, y)
    return answers


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_contract__the_input_dict_is_never_changed(spec: Spec) -> None:
    model = spec.make(42)
    for x, y in spec.examples(1):
        before = copy.deepcopy(x)
        spec.answer(model, x)
        spec.learn(model, x, y)
        assert x == before


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_contract__deterministic_given_a_seed(spec: Spec) -> None:
    examples = spec.examples(2)
    assert run(spec, spec.make(7), examples) == run(spec, spec.make(7), examples)


def test_contract__the_seed_is_used_where_the_model_draws_random_numbers() -> None:
    anomaly = next(s for s in SPECS if s.name == "anomaly")
    examples = anomaly.examples(3)
    assert run(anomaly, anomaly.make(1), examples) != run(anomaly, anomaly.make(2), examples)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_contract__a_pickle_round_trip_mid_stream_changes_no_answer(spec: Spec) -> None:
    examples = spec.examples(4)
    half = len(examples) // 2
    straight = spec.make(11)
    run(spec, straight, examples[:half])
    restored = pickle.loads(pickle.dumps(straight, protocol=5))
    assert run(spec, restored, examples[half:]) == run(spec, straight, examples[half:])


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_contract__an_unknown_feature_changes_nothing(spec: Spec) -> None:
    examples = spec.examples(5)
    widened = [({**x, "unknown_feature": 1e9, "route_name": "NX1"}, y) for x, y in examples]
    assert run(spec, spec.make(3), widened) == run(spec, spec.make(3), examples)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_contract__parameters_under_their_names_and_a_clone_starts_unlearned(spec: Spec) -> None:
    model = spec.make(5)
    examples = spec.examples(6)
    run(spec, model, examples[:50])
    steps = list(model.steps.values()) if hasattr(model, "steps") else [model]
    for step in steps:
        names = set(inspect.signature(type(step)).parameters)
        params = step._get_params()
        assert set(params) <= names and params, f"{type(step).__name__}: {params}"
        for name, value in params.items():
            assert getattr(step, name) == value or name == "limits"  # HST keeps its limits as given
    clone = model.clone()
    assert run(spec, clone, examples) == run(spec, spec.make(5), examples)


def test_forecaster__a_missing_feature_is_one_clear_error() -> None:
    model = SeasonalLevel(alpha=0.05, gamma=0.2)
    with pytest.raises(ValueError, match="'base' missing"):
        model.predict_one({"slot": 3})
    with pytest.raises(ValueError, match="slot='night'"):
        model.learn_one({"slot": "night", "base": 1.0}, 2.0)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(st.integers(0, 23), st.floats(0.0, 500.0), st.floats(0.0, 5_000.0, allow_nan=False)),
        min_size=1,
        max_size=60,
    )
)
def test_forecaster__forecasts_stay_finite_and_non_negative_for_any_activity(
    series: list[tuple[int, float, float]],
) -> None:
    model = SeasonalLevel(alpha=0.05, gamma=0.2)
    for slot, base, y in series:
        x = {"slot": slot, "base": base}
        model.learn_one(x, y)
        f = model.predict_one(x)
        assert f >= 0.0 and f == f and f != float("inf")
