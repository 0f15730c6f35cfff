"""The chain worker: its threads (the intake, a channel per channel account, deposits,
payout runs and the distribution account's balance), wired together and run."""

from __future__ import annotations

import threading
from collections.abc import Callable

from confluent_kafka import Consumer

from chain.balance_watch import BalanceWatch
from chain.channel import ChannelWorker, channel_horizon
from chain.config import ChainSettings
from chain.deposits import DepositFollower
from chain.intake import Intake
from chain.kill_switch import KillSwitch
from chain.runs import RunDriver, RunStore
from chain.stellar import horizon_client
from chain.store import ChainStore
from commands.application import Books
from runtime import metrics
from runtime.kafka import TopicWatch


class ChainWorker:
    """The intake thread, one thread per channel (the distribution account itself when
    there are no channels), and the deposit follower.

    What it talks to is passed in (built by ``entrypoints.cli.services``, the Kafka clients
    through ``entrypoints.bootstrap``): its two stores, the intake's ``consumer`` and
    ``topic_watch``, and the crash tests' ``kill`` switch. When ``run`` ends it closes the
    consumer and its own connections to the stores."""

    def __init__(
        self,
        settings: ChainSettings,
        store: ChainStore,
        run_store: RunStore,
        books: Books,
        consumer: Consumer,
        topic_watch: TopicWatch,
        kill: KillSwitch,
    ) -> None:
        self.kill = kill
        self.store = store
        metrics.payouts_stuck().set_function(self.store.stuck_count)
        self.intake = Intake(self.store, books, consumer, topic_watch, self.kill)
        channels = settings.keys.channels or (settings.keys.distribution,)
        url = settings.horizon_url  # each thread gets a Horizon client (a session) of its own
        self.channels = [
            ChannelWorker(settings, self.store, books, channel_horizon(url), c, self.kill) for c in channels
        ]
        self.deposits = DepositFollower(settings, self.store, books, horizon_client(url))
        self.run_store = run_store
        self.runs = RunDriver(self.run_store, books, self.kill.passed)
        self.balances = BalanceWatch(settings, self.store, books, horizon_client(url))

    def run(self, stop: threading.Event, on_ready: Callable[[], None] = lambda: None) -> None:
        self.intake.start()
        threads = [
            threading.Thread(target=c.run, args=(stop,), name=f"channel-{n}", daemon=True)
            for n, c in enumerate(self.channels)
        ]
        threads.append(threading.Thread(target=self.deposits.run, args=(stop,), name="deposits", daemon=True))
        threads.append(threading.Thread(target=self.runs.run, args=(stop,), name="runs", daemon=True))
        threads.append(threading.Thread(target=self.balances.run, args=(stop,), name="balances", daemon=True))
        for thread in threads:
            thread.start()
        on_ready()
        try:
            while not stop.is_set():
                self.intake.poll(0.5)
        finally:
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
            self.intake.close()
            self.store.close()
            self.run_store.close()
