"""The crash tests' hook refuses a spec it would silently never fire on."""

from __future__ import annotations

import pytest

from chain.kill_switch import KillSwitch


@pytest.mark.parametrize("spec", ["nowhere", "intake:abc", "intake:0", "intake:-1"])
def test_a_spec_that_cannot_fire_is_refused_naming_the_variable(spec: str) -> None:
    with pytest.raises(ValueError, match="LEDGER_CHAIN_KILL_AT"):
        KillSwitch(spec)


def test_a_spec_names_a_step_and_how_many_passes_first() -> None:
    assert (KillSwitch("stored:3").step, KillSwitch("stored:3").remaining) == ("stored", 3)
    assert (KillSwitch("intake").step, KillSwitch("intake").remaining) == ("intake", 1)
    assert KillSwitch(None).step is None
