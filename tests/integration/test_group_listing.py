"""The borrower group on the watch list across two workers, on the real broker (issue 19).

The demo's loan book with ``L-AKL-002`` (the demo's margin call) and ``L-AKL-003`` put in one borrower
group; with two loan partitions and two workers each worker holds one of them. ``L-AKL-002`` enters the
watch list by its margin call on one worker; its standing reaches the other worker through
``internal.group-listing``, and ``L-AKL-003`` enters it by ``watch-group-listed`` at its next
evaluation there (before, a worker counted only the loans it held, and it never did).
"""

from __future__ import annotations

import datetime as dt
import json
import time
import urllib.request
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from monitor.schemas import GroupListing, InterestAccrued, WatchListEvent
from streams.store import key_partition
from streams.topics import create_topics, delete_topics
from tests.integration.conftest import Env, Worker, demo_input, read_topic, replay, wait_caught_up

#: 11:30 NZST: the demo's margin call (window 10:45 NZST) has been issued (as tests/integration/test_api.py)
SLICE_END = dt.datetime(2016, 5, 19, 23, 30, tzinfo=dt.UTC)
LISTED, PARTNER, GROUP = "L-AKL-002", "L-AKL-003", "GRP-AKL"


def grouped(book: list[bytes]) -> list[bytes]:
    """The demo's loan book with the two loans opened in one borrower group."""
    out = []
    for raw in book:
        rec = json.loads(raw)
        if rec["type"] == "loan_opened" and rec["loan_id"] in (LISTED, PARTNER):
            rec["borrower_group"] = GROUP
        out.append(json.dumps(rec).encode())
    return out


def local_loans(w: Worker) -> set[str]:
    url = f"http://127.0.0.1:{w.vars['PLEDGEWATCH_WEB_PORT']}/api/loans?scope=local"
    with urllib.request.urlopen(url, timeout=30) as resp:
        return {x["loan_id"] for x in json.loads(resp.read())}


def test_two_workers__the_partner_of_a_loan_listed_by_its_margin_call_is_listed_by_the_group(
    bootstrap: str, tmp_path: Path
) -> None:
    env = Env(bootstrap, tmp_path, partitions=2)  # two loan partitions: one a worker
    assert key_partition(LISTED.encode(), 2) != key_partition(PARTNER.encode(), 2)
    create_topics(env.settings)
    w1, w2 = Worker(env), Worker(env, second=True)
    try:
        w1.start()
        w2.start(members=2)
        book, events = demo_input(SLICE_END)
        replay(env.settings, grouped(book), events)
        wait_caught_up(env.settings, env.run)
        held = [local_loans(w) for w in (w1, w2)]
        assert all(held) and not (held[0] & held[1])  # the premise: one loan of the group on each worker
        assert any(LISTED in h and PARTNER not in h for h in held)

        def listing(records: list[Any]) -> bool:
            recs = [GroupListing.model_validate_json(r.value) for r in records if r.key == LISTED.encode()]
            return bool(recs) and recs[-1].listed

        read_topic(env.settings, "group-listing", until=listing, timeout=60)
        entered = [e for e in watch_list(env) if e.loan_id == LISTED and e.status == "entered"]
        assert entered and "margin-call" in entered[0].rule_id  # listed by its margin call, on its worker

        # the partner's next evaluation (a loan event after the listing) counts the other worker's loan
        producer = KafkaProducer(**env.settings.kafka_options())
        try:
            found: list[WatchListEvent] = []
            for i in range(6):  # its worker's reader may take a moment: one evaluation a try
                at = SLICE_END + dt.timedelta(minutes=i)
                ev = InterestAccrued(event_id=f"{PARTNER}:interest:{i}", loan_id=PARTNER, effective_at=at, amount=1.0)
                producer.send(
                    env.settings.topic("loan-book"), key=PARTNER.encode(), value=ev.model_dump_json().encode()
                )
                producer.flush()
                deadline = time.monotonic() + 10
                while not found and time.monotonic() < deadline:
                    found = [
                        e
                        for e in watch_list(env)
                        if e.loan_id == PARTNER and any(r.rule_id == "watch-group-listed" for r in e.reasons)
                    ]
                    time.sleep(0.5)
                if found:
                    break
        finally:
            producer.close()
        assert found, "the partner on the other worker was never listed by its group"
        assert found[0].facts["group_others_on_watch_list"] == 1.0
        assert w1.alive() and w2.alive()
    finally:
        w1.stop(timeout=5.0)
        w2.stop(timeout=5.0)
        delete_topics(bootstrap, env.run)


def watch_list(env: Env) -> list[WatchListEvent]:
    return [WatchListEvent.model_validate_json(r.value) for r in read_topic(env.settings, "watch-list", timeout=30)]
