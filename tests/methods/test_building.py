"""Methods by name with their options (camkit.methods.building)."""

from __future__ import annotations

import pytest

from camkit.methods import METHODS
from camkit.methods.building import build, options_of
from camkit.models import example_net

# Every whole-number option of a method sizes its work (passes, copies, rows held at once,
# iterations), except a seed: each is bounded, so a mistyped value is refused at once.
SIZING = [
    (m, o)
    for m in METHODS
    for o, p in options_of(m).items()
    if type(p.default) is int and o != "seed"
]


def test_the_sizing_options_are_the_ones_expected() -> None:
    # a new whole-number option shows up here and gets its bound
    assert {o for _, o in SIZING} == {
        "copies",
        "rows_per_pass",
        "compare",
        "num_scales",
        "samples",
        "concepts",
        "steps",
    }


@pytest.mark.parametrize(("method", "option"), SIZING)
def test_every_option_that_sizes_work_is_bounded(method: str, option: str) -> None:
    net = example_net()
    default = options_of(method)[option].default
    build(method, net, options={method: {option: default}})  # the default is in range
    for wrong in (10**7, 0, 2.5, True):
        with pytest.raises(ValueError, match=rf"{option} {wrong!r}: give a whole number from 1"):
            build(method, net, options={method: {option: wrong}})
