"""Rebuilding the read models from the event store while queries and the projector run."""

from __future__ import annotations

import threading
import time
from typing import Any

import pymongo

from auth.store import KeyStore
from commands.application import Books
from commands.messages import TransferFunds
from contracts import readmodel as schema
from contracts.generations import Generations
from projectors.projector import Projector
from projectors.rebuild import rebuild
from projectors.relay import Relay, RelayState
from projectors.replay import differences
from queries.http import create_app
from tests.conftest import Urls, api_client, unique
from tests.integration.test_pipeline import some_activity


def test_a_rebuild_while_queries_run_answers_the_same_before_during_and_after(
    books: Books, servers: Urls, keys: KeyStore, admin_token: str
) -> None:
    client: pymongo.MongoClient[Any] = pymongo.MongoClient(servers.mongo_url)
    generations = Generations(client, unique("rb").replace("-", "_"))
    topic = unique("events")
    accounts = [some_activity(books, transfers=3) for _ in range(3)]
    relay = Relay(
        books,
        RelayState(servers.database_url, topic),
        servers.database_url,
        servers.producer(),
        servers.topic_watch(topic, 3),
    )
    relay.start()
    while relay.publish_batch():
        pass
    projector = Projector(
        generations.active_database(),
        servers.consumer(),
        servers.topic_watch(topic, 3),
        store_head=books.head_position,
        generations=generations,
    )
    stop = threading.Event()
    projecting = threading.Thread(target=projector.run, args=(stop,))
    projecting.start()
    api = api_client(create_app(generations, wait_seconds=10, keys=keys), admin_token)
    head = books.head_position()
    try:
        first = api.simulate_get(f"/v1/accounts/{accounts[0][0]}", params={"min_position": head})
        assert first.status_code == 200
        expected = {
            account: api.simulate_get(f"/v1/accounts/{account}").json["balance"]
            for pair in accounts
            for account in pair
        }
        answers: list[bool] = []
        querying = threading.Event()

        def query() -> None:
            while not querying.is_set():
                for account, balance in expected.items():
                    reply = api.simulate_get(f"/v1/accounts/{account}")
                    answers.append(reply.status_code == 200 and reply.json["balance"] == balance)

        reader = threading.Thread(target=query)
        reader.start()
        try:
            generation = rebuild(books, generations)
        finally:
            time.sleep(0.2)
            querying.set()
            reader.join()
        assert generation == 2 and generations.active() == 2
        assert answers and all(answers), f"{answers.count(False)} of {len(answers)} answers differed"

        # The projector now writes to the new generation.
        a, b = accounts[1]
        later = books.transfer(TransferFunds(unique("t"), a, b, "1.00"))["position"]
        while relay.publish_batch():
            pass
        reply = api.simulate_get(f"/v1/accounts/{b}", params={"min_position": later})
        assert reply.status_code == 200
        assert reply.json["balance"]["available"] == "4.75"  # 3 x 1.25 before, 1.00 after
    finally:
        stop.set()
        projecting.join()
    assert differences(books, generations.active_database()) == []
    assert schema.watermark(generations.active_database()) >= later
    client.close()
