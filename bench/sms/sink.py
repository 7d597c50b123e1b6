"""A stand-in SMS aggregator on 127.0.0.1, answering exactly like the one the "http"
transport talks to (Africa's Talking style), and recording what it received.

    python -m bench.sms.sink --port 8090 [--api-key KEY] [--delay 0.02]

- ``POST /version1/messaging``: form ``username, to, message[, from]`` with an ``apiKey``
  header -> HTTP 201 and ``{"SMSMessageData": {"Message", "Recipients": [{"statusCode": 101,
  "number", "status": "Success", "cost", "messageId"}]}}`` (a fresh ``messageId`` each time).
  A wrong key gets the documented 401 plain text; a form without ``to``/``message`` a 400.
  ``--delay`` holds each answer that long *after* recording the message (a slow provider:
  messages received but not yet acknowledged, which is what a crash duplicates).
- ``GET /stats``: ``{"received", "distinct", "duplicates", "rejected", "first", "last"}``
  (``first``/``last``: wall-clock times of the first and last accepted message).
- ``GET /received``: ``{"counts": {message text: times received}}``.
- ``POST /reset``: forget everything.

Runs in its own process so it does not share a core's event loop with what it measures.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import time

from aiohttp import web

PATH = "/version1/messaging"
_REPLY = (
    '{"SMSMessageData":{"Message":"Sent to 1/1 Total Cost: VND 0",'
    '"Recipients":[{"statusCode":101,"number":%s,"status":"Success","cost":"VND 0","messageId":"ATPid_sink_%d"}]}}'
)


class Sink:
    def __init__(self, api_key: str, delay: float) -> None:
        self.api_key = api_key
        self.delay = delay
        self.reset()

    def reset(self) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.total = 0
        self.rejected = 0
        self.first: float | None = None
        self.last: float | None = None
        self.ids = itertools.count(1)

    async def send(self, request: web.Request) -> web.Response:
        form = await request.post()
        if self.api_key and request.headers.get("apiKey") != self.api_key:
            self.rejected += 1
            return web.Response(status=401, text="The supplied authentication is invalid")
        to, message = form.get("to"), form.get("message")
        if not isinstance(to, str) or not to or not isinstance(message, str) or not form.get("username"):
            self.rejected += 1
            return web.Response(status=400, text="to, message and username are required")
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        self.total += 1
        self.counts[message] += 1
        if self.delay:
            await asyncio.sleep(self.delay)
        body = _REPLY % (json.dumps(to), next(self.ids))
        return web.Response(status=201, text=body, content_type="application/json")

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({
            "received": self.total,
            "distinct": len(self.counts),
            "duplicates": self.total - len(self.counts),
            "rejected": self.rejected,
            "first": self.first,
            "last": self.last,
        })

    async def received(self, request: web.Request) -> web.Response:
        return web.json_response({"counts": dict(self.counts)})

    async def do_reset(self, request: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"status": "reset"})


def make_app(api_key: str = "", delay: float = 0.0) -> web.Application:
    sink = Sink(api_key, delay)
    app = web.Application()
    app.router.add_post(PATH, sink.send)
    app.router.add_get("/stats", sink.stats)
    app.router.add_get("/received", sink.received)
    app.router.add_post("/reset", sink.do_reset)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--api-key", default="")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds to hold each answer")
    options = parser.parse_args()
    web.run_app(make_app(options.api_key, options.delay), host="127.0.0.1", port=options.port,
                print=None, access_log=None)


if __name__ == "__main__":
    main()
