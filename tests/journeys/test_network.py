"""Money and providers: deposit, register, stake, publish, a network-placed run, its charges, a withdrawal."""

import re

import pytest

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_fund_stake_publish_run_on_the_network_and_withdraw(journey):
    run = journey("network", timeout=600)
    shown = run.output_of("cxmpute runs show $RUN")
    assert "144" in shown
    assert re.search(r"square .* completed .* 0x[0-9A-Fa-f]", shown), shown  # ran on a provider, by address
    history = run.output_of("cxmpute account history")
    assert "escrow-hold" in history and "deposit" in history, history
    assert '"chain_tx"' in run.output_of("cxmpute account withdraw")
