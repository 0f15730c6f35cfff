"""What both HTTP apps share (runtime.web), on falcon's test client: no server needed."""

from __future__ import annotations

import re

import falcon
import falcon.testing

from runtime import web


class Hello:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.media = {"hello": "world"}


def test_every_request_gets_its_own_id_unless_it_brings_one() -> None:
    app = web.create_base_app()
    app.add_route("/hello", Hello())
    client = falcon.testing.TestClient(app)
    ids = [client.simulate_get("/hello").headers["X-Request-Id"] for _ in range(3)]
    assert len(set(ids)) == 3 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    other = falcon.testing.TestClient(web.create_base_app())  # another process: another prefix
    assert other.simulate_get("/nowhere").headers["X-Request-Id"][:16] != ids[0][:16]
    assert client.simulate_get("/hello", headers={"X-Request-Id": "mine"}).headers["X-Request-Id"] == "mine"
