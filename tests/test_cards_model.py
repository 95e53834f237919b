"""The SIM lifecycle table against DOMAIN.md section 5, written out independently."""

from __future__ import annotations

import pytest

from hkops.cards.model import MOVES, TERMINAL, SimState, target_state
from hkops.errors import IllegalTransition

# (action, from, to) for every move DOMAIN.md section 5 draws.
DOMAIN = {
    ("allocate", "in_stock", "allocated"),
    ("pair", "in_stock", "paired"), ("pair", "allocated", "paired"),
    ("activate", "paired", "active"),
    ("suspend", "active", "suspended"), ("resume", "suspended", "active"),
    ("report_loss", "active", "lost"), ("report_loss", "suspended", "lost"), ("lift_loss", "lost", "active"),
    ("replace", "active", "replaced"), ("replace", "suspended", "replaced"), ("replace", "lost", "replaced"),
    ("terminate", "paired", "terminated"), ("terminate", "active", "terminated"),
    ("terminate", "suspended", "terminated"), ("terminate", "lost", "terminated"),
    ("mark_faulty", "in_stock", "faulty"), ("mark_faulty", "allocated", "faulty"), ("destroy", "faulty", "destroyed"),
}


@pytest.mark.parametrize("action", sorted(MOVES))
@pytest.mark.parametrize("state", list(SimState))
def test_every_move_is_allowed_exactly_where_the_domain_allows_it(action, state):
    allowed = {(a, f): t for a, f, t in DOMAIN}
    if (action, state.value) in allowed:
        assert target_state(action, "8986001", state).value == allowed[(action, state.value)]
    else:
        with pytest.raises(IllegalTransition, match=f"SIM 8986001: it is {state.value}"):
            target_state(action, "8986001", state)


def test_a_replaced_or_terminated_card_never_comes_back():
    for state in TERMINAL:
        for action in MOVES:
            with pytest.raises(IllegalTransition, match="final"):
                target_state(action, "8986001", state)


def test_moves_that_change_service_carry_a_network_command():
    assert MOVES["activate"].network == "add_subscriber"
    assert MOVES["report_loss"].network == "bar"
    assert MOVES["replace"].network == "change_imsi"
    assert MOVES["terminate"].network == "remove_subscriber"
    assert MOVES["terminate"].number_action == "terminate"
