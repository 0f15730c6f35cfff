"""Balance monitors on the Account aggregate, in memory: a crossing is recorded once, in
the write of the command that made it, and replaying never records it again.

``Writer.save`` calls ``Account.watch`` once a command's movements are made; here the
tests call it where a command would end."""

import pytest

from ledger.accounts import Account
from ledger.errors import AccountNotOpen, MonitorNotFound, TooManyMonitors
from ledger.monitors import ABOVE, AVAILABLE, BELOW, MAX_MONITORS, POSTED, Monitor


def funded(amount: int = 10_000) -> Account:
    account = Account(account_id="A", asset="USD/2", overdraft_limit=0, system=False, metadata={})
    account.credit("d1", amount)
    account.collect_events()
    return account


def crossings(account: Account) -> list[tuple[str, str, int, str | None]]:
    """The crossings recorded since the last look, the current command ending now."""
    account.watch()
    return [
        ("MonitorTriggered" if e.triggered else "MonitorCleared", e.monitor_id, e.value, e.transfer_id)
        for e in account.collect_events()
        if isinstance(e, Account.MonitorCrossed)
    ]


def test_a_monitor_fires_once_per_crossing_not_per_movement() -> None:
    account = funded()
    assert account.set_monitor(Monitor("low", AVAILABLE, BELOW, 5_000))
    assert crossings(account) == []
    commands = [("debit", f"a{n}", 1_000) for n in range(4)]  # 100.00 -> 60.00: above throughout
    commands.append(("debit", "cross", 1_500))  # 45.00: below
    commands += [("debit", f"b{n}", 1_000) for n in range(3)]  # further down: still below, nothing new
    commands += [("credit", "back", 5_000), ("debit", "again", 2_000)]  # 65.00: clear; 45.00: below again
    recorded = []
    for method, transfer_id, amount in commands:
        getattr(account, method)(transfer_id, amount)
        recorded += crossings(account)
    assert recorded == [
        ("MonitorTriggered", "low", 4_500, "cross"),
        ("MonitorCleared", "low", 6_500, "back"),
        ("MonitorTriggered", "low", 4_500, "again"),
    ]


def test_the_threshold_itself_is_not_a_crossing() -> None:
    account = funded()
    account.set_monitor(Monitor("low", AVAILABLE, BELOW, 5_000))
    account.set_monitor(Monitor("high", POSTED, ABOVE, 10_000))
    account.debit("t", 5_000)
    account.credit("t2", 5_000)
    assert crossings(account) == []


def test_a_pending_debit_moves_the_available_balance_and_not_the_posted_one() -> None:
    account = funded()
    account.set_monitor(Monitor("avail", AVAILABLE, BELOW, 5_000))
    account.set_monitor(Monitor("posted", POSTED, BELOW, 5_000))
    account.add_pending_debit("h", 6_000)
    assert crossings(account) == [("MonitorTriggered", "avail", 4_000, "h")]
    account.void_pending_debit("h", 6_000, "voided")
    assert crossings(account) == [("MonitorCleared", "avail", 10_000, "h")]
    account.add_pending_debit("h2", 6_000)
    assert crossings(account) == [("MonitorTriggered", "avail", 4_000, "h2")]
    account.post_pending_debit("h2", 6_000, 6_000)
    assert crossings(account) == [("MonitorTriggered", "posted", 4_000, "h2")]


def test_a_command_that_ends_where_it_started_crossed_nothing() -> None:
    account = funded()
    account.set_monitor(Monitor("low", AVAILABLE, BELOW, 5_000))
    account.debit("out", 8_000)  # 20.00 on the way...
    account.credit("back", 8_000)  # ...and 100.00 again, in the same command
    assert crossings(account) == []


def test_a_crossing_is_put_down_to_the_commands_first_movement() -> None:
    account = funded()
    account.set_monitor(Monitor("low", AVAILABLE, BELOW, 5_000))
    account.debit("t1", 4_900)  # 51.00: still clear
    account.debit("t1$fee", 200)  # its fee: 49.00
    assert crossings(account) == [("MonitorTriggered", "low", 4_900, "t1")]


def test_an_account_takes_a_bounded_number_of_monitors() -> None:
    account = funded()
    for n in range(MAX_MONITORS):
        account.set_monitor(Monitor(f"m{n}", AVAILABLE, BELOW, n))
    with pytest.raises(TooManyMonitors):
        account.set_monitor(Monitor("one-more", AVAILABLE, BELOW, 1))
    assert account.set_monitor(Monitor("m0", POSTED, ABOVE, 1))  # changing one is fine


def test_a_monitor_set_past_its_threshold_fires_at_once_and_setting_it_again_does_nothing() -> None:
    account = funded()
    monitor = Monitor("rich", POSTED, ABOVE, 5_000)
    assert account.set_monitor(monitor)
    assert crossings(account) == [("MonitorTriggered", "rich", 10_000, None)]
    assert not account.set_monitor(monitor)
    assert account.collect_events() == []


def test_changing_a_monitor_starts_it_afresh() -> None:
    account = funded()
    account.set_monitor(Monitor("m", AVAILABLE, BELOW, 20_000))
    account.set_monitor(Monitor("m", AVAILABLE, BELOW, 30_000))
    assert crossings(account) == [("MonitorTriggered", "m", 10_000, None), ("MonitorTriggered", "m", 10_000, None)]
    account.set_monitor(Monitor("m", AVAILABLE, BELOW, 1_000))
    account.debit("t", 500)
    assert crossings(account) == []


def test_a_removed_monitor_fires_no_more_and_removing_it_twice_is_refused() -> None:
    account = funded()
    account.set_monitor(Monitor("low", AVAILABLE, BELOW, 5_000))
    account.remove_monitor("low")
    account.debit("t", 9_000)
    assert crossings(account) == []
    with pytest.raises(MonitorNotFound):
        account.remove_monitor("low")


def test_a_closed_account_takes_no_monitor() -> None:
    account = Account(account_id="A", asset="USD/2", overdraft_limit=0, system=False, metadata={})
    account.close()
    with pytest.raises(AccountNotOpen):
        account.set_monitor(Monitor("low", AVAILABLE, BELOW, 1))


def test_replaying_applies_the_recorded_crossings_and_records_none() -> None:
    account = Account(account_id="A", asset="USD/2", overdraft_limit=0, system=False, metadata={})
    account.credit("d", 10_000)
    account.set_monitor(Monitor("low", AVAILABLE, BELOW, 5_000))
    account.debit("t", 6_000)
    account.watch()
    events = account.collect_events()
    replayed = None
    for e in events:
        replayed = e.mutate(replayed)
    assert replayed is not None
    assert replayed.triggered_monitors == {"low"}
    assert replayed.monitors == account.monitors
    assert replayed.collect_events() == []
    replayed.debit("t2", 100)  # still below: the replayed state knows it was triggered
    assert crossings(replayed) == []
