"""``GET /loans/{id}/report`` in-process (issue 19.4): the view on a stand-in faust app, its topics read by a stub.

What the integration tests cannot provoke on a healthy broker: output topics that cannot be read
(an error, or a read past its time) answer 503 with a reason, the read runs off the event loop, and a
loan the worker holds with no snapshot on ``loan-risk`` yet is a 404. The real page, broker and
Chromium are ``tests/integration/test_portfolio_page.py``'s.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

import streams.api
from streams.api import register_api
from streams.latest import Outputs

ME = "http://127.0.0.1:6066"


class Answer:
    def __init__(self, body: str, status: int, headers: dict[str, str] | None, content_type: str) -> None:
        self.body, self.status, self.headers, self.content_type = body, status, headers or {}, content_type


class Web:
    """The part of faust's ``web`` the views use."""

    def json(self, value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
        return Answer(json.dumps(value), status, headers, "application/json")

    def html(self, value: str, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
        return Answer(value, status, headers, "text/html")

    def text(self, value: str, content_type: str, status: int = 200, headers: dict[str, str] | None = None) -> Answer:
        return Answer(value, status, headers, content_type)


class App:
    """Collects the pages; every key is held by this worker."""

    def __init__(self) -> None:
        self.pages: dict[str, Any] = {}
        self.conf = SimpleNamespace(canonical_url=ME)
        self.router = SimpleNamespace(key_store=lambda table, key: ME, table_metadata=lambda table: [ME])

    def page(self, path: str) -> Any:
        def add(fn: Any) -> Any:
            self.pages[path] = fn
            return fn

        return add


def views(read_outputs: Any) -> dict[str, Any]:
    node = SimpleNamespace(
        loan_state=SimpleNamespace(load=lambda key: None),
        loans=SimpleNamespace(loans={"L1": SimpleNamespace(opened=SimpleNamespace(borrower_id="B1"))}),
    )
    app = App()
    table = SimpleNamespace(name="loan-state")
    register_api(app, node, table, table, read_outputs=read_outputs)
    return app.pages


def ask(pages: dict[str, Any], path: str, loan_id: str, **query: str) -> Answer:
    request = SimpleNamespace(query=query, headers={}, remote="127.0.0.1", path=path)
    return asyncio.run(pages[path](Web(), request, loan_id))


REPORT = "/loans/{loan_id}/report"


def test_topics_that_cannot_be_read_answer_503_with_the_reason() -> None:
    def broken(timeout_s: float, loan_id: str) -> Outputs:
        raise ConnectionError("no broker")

    got = ask(views(broken), REPORT, "L1")
    assert got.status == 503 and "ConnectionError" in json.loads(got.body)["error"]
    assert "Content-Security-Policy" not in got.headers


def test_a_read_past_its_time_answers_503(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams.api, "REPORT_READ_TIMEOUT_S", 0.05)
    monkeypatch.setattr(streams.api, "REPORT_RENDER_S", 0.05)
    seen: list[float] = []

    def slow(timeout_s: float, loan_id: str) -> Outputs:
        seen.append(timeout_s)
        time.sleep(1.0)
        return Outputs([], [], [], [])

    pages = views(slow)

    async def timed() -> tuple[Answer, float]:
        started = time.monotonic()
        request = SimpleNamespace(query={}, headers={}, remote="127.0.0.1", path=REPORT)
        answer = await pages[REPORT](Web(), request, "L1")
        return answer, time.monotonic() - started

    got, took = asyncio.run(timed())  # (asyncio.run then waits for the stuck thread to end)
    assert got.status == 503 and "TimeoutError" in json.loads(got.body)["error"]
    assert seen == [0.05] and took < 0.9  # answered without waiting for the stuck read


def test_the_read_runs_off_the_event_loop() -> None:
    go = threading.Event()

    def waits_for_the_loop(timeout_s: float, loan_id: str) -> Outputs:
        # set by a coroutine on the loop: had the read blocked the loop, it would never be set
        if not go.wait(timeout=5):
            raise AssertionError("the event loop was blocked by the read")
        return Outputs([], [], [], [])

    pages = views(waits_for_the_loop)

    async def both() -> Answer:
        async def release() -> None:
            await asyncio.sleep(0.05)
            go.set()

        request = SimpleNamespace(query={}, headers={}, remote="127.0.0.1", path=REPORT)
        answer, _ = await asyncio.gather(pages[REPORT](Web(), request, "L1"), release())
        return answer  # type: ignore[no-any-return]

    got = asyncio.run(both())
    # read, then no snapshot of L1 on loan-risk: a 404 saying so
    assert got.status == 404, got.body
    assert json.loads(got.body) == {"error": "loan_id: no risk snapshot of loan 'L1' on the output topics yet"}


def test_an_unknown_loan_is_the_apis_404_and_bad_parameters_a_400() -> None:
    def never(timeout_s: float, loan_id: str) -> Outputs:
        raise AssertionError("topics read for a loan the worker does not hold")

    pages = views(never)
    report = ask(pages, REPORT, "L-NOPE")
    api = ask(pages, "/api/loans/{loan_id}", "L-NOPE")
    assert (report.status, report.body) == (api.status, api.body) == (404, '{"error": "loan_id: no loan \'L-NOPE\'"}')
    for query in ({"lang": "fr"}, {"days": "0"}, {"days": "93"}, {"days": "1.5"}, {"days": "٣"}):
        got = ask(pages, REPORT, "L1", **query)
        assert got.status == 400, query
