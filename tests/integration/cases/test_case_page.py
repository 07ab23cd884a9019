"""Case management end to end: fraud alerts on Kafka become cases in PostgreSQL exactly once
(also across a restart of the intake; pattern alerts on the same topic open none), an analyst
decides one on the real page in a headless Chromium, and the decision lands in the database
and, once, on the fraud-labels topic."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
from aiokafka import AIOKafkaProducer

from cases.service import CaseService
from contracts.codec import encode
from contracts.events import AlertReason, FraudAlert, FraudLabel, PatternAlert, Transaction
from infra import processes
from rtml.settings import Settings, Topics

T0 = 1_700_000_000_000


def alert(n: int, merchant: str) -> FraudAlert:
    tx = Transaction(
        event_id=f"case-tx-{n}-{uuid.uuid4().hex[:6]}",
        card_id=f"card-{n}",
        user_id=f"user-{n}",
        merchant_id=merchant,
        merchant_category="electronics",
        amount=1234.5 + n,
        currency="EUR",
        lat=48.85,
        lon=2.35,
        event_time=T0 + n,
        channel="online",
    )
    return FraudAlert(
        event_id=tx.event_id,
        card_id=tx.card_id,
        score=0.97,
        model_version="test-model",
        features={"amount": tx.amount, "distance_from_home_km": None},
        event_time=tx.event_time,
        ingested_at=T0,
        scored_at=T0 + 5,
        threshold=0.8,
        reasons=[AlertReason("amount", tx.amount, 2.5), AlertReason("tx_count_1h", 9.0, 1.25)],
        transaction=tx,
    )


# --- a minimal W3C WebDriver client (chromedriver speaks it over HTTP) -------------------------


class Browser:
    """Headless Debian Chromium through chromedriver; blocking calls (run them in a thread)."""

    def __init__(self, port: int) -> None:
        self._base = f"http://127.0.0.1:{port}"
        options = {
            "binary": shutil.which("chromium") or "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
        }
        caps = {"capabilities": {"alwaysMatch": {"goog:chromeOptions": options}}}
        self._session = self._call("POST", "/session", caps)["sessionId"]

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = json.dumps(body if body is not None else {}).encode() if method == "POST" else None
        request = urllib.request.Request(
            self._base + path,
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return json.loads(response.read())["value"]
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"webdriver {method} {path}: {exc.read()[:500]!r}") from exc

    def _s(self, path: str) -> str:
        return f"/session/{self._session}{path}"

    def get(self, url: str) -> None:
        self._call("POST", self._s("/url"), {"url": url})

    def find(self, css: str) -> str:
        found = self._call("POST", self._s("/element"), {"using": "css selector", "value": css})
        return next(iter(found.values()))

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", self._s("/elements"), {"using": "css selector", "value": css})
        return [next(iter(element.values())) for element in found]

    def text(self, element: str) -> str:
        return self._call("GET", self._s(f"/element/{element}/text"))

    def type(self, element: str, text: str) -> None:
        self._call("POST", self._s(f"/element/{element}/value"), {"text": text})

    def click(self, element: str) -> None:
        self._call("POST", self._s(f"/element/{element}/click"))

    def wait_for(self, css: str, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while True:
            found = self.find_all(css)
            if found:
                return found[0]
            assert time.monotonic() < deadline, f"{css} did not appear"
            time.sleep(0.2)

    def quit(self) -> None:
        self._call("DELETE", self._s(""))


@pytest.fixture
def browser() -> Iterator[Browser]:
    driver = shutil.which("chromedriver")
    if driver is None:
        pytest.fail("chromedriver is not installed (apt-get install chromium chromium-driver)")
    port = processes.free_port()
    process = subprocess.Popen(
        [driver, f"--port={port}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        assert processes.wait_until(lambda: processes.port_accepts("127.0.0.1", port), 30)
        client = Browser(port)
        try:
            yield client
        finally:
            client.quit()
    finally:
        process.terminate()
        process.wait(timeout=30)


async def wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not await predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.2)


async def test_alerts_become_cases_and_decisions_become_labels(
    cdc_settings: Settings, new_topic, producer: AIOKafkaProducer, read_topic, browser: Browser
) -> None:
    topics = Topics(
        fraud_alerts={"name": await new_topic(2), "partitions": 2},
        fraud_labels={"name": await new_topic(1)},
        dead_letter={"name": await new_topic(1)},
    )  # type: ignore[arg-type]
    settings = cdc_settings.model_copy(update={"rtml_topics": topics})
    merchant = f"m-{uuid.uuid4().hex[:6]}"
    alerts = [alert(n, merchant) for n in range(3)]
    # A pattern rule's alert on the same topic (before alerts[0], same key): not a case.
    pattern = PatternAlert(
        rule="card_testing",
        rules_version=1,
        event_id=alerts[0].event_id,
        card_id="card-0",
        event_ids=[alerts[0].event_id],
        matches=1,
        event_time=T0,
        ingested_at=T0,
        detected_at=T0 + 1,
    )
    await producer.send(topics.fraud_alerts.name, encode(pattern), key=b"card-0")
    for item in alerts:
        await producer.send(topics.fraud_alerts.name, encode(item), key=item.card_id.encode())
    await producer.send(topics.fraud_alerts.name, encode(alerts[0]), key=b"card-0")  # again
    await producer.send(topics.fraud_alerts.name, b"{not an alert", key=b"card-x")
    await producer.flush()
    ours = {a.event_id for a in alerts}

    port = processes.free_port()
    async with CaseService(settings, port=port) as service:
        assert service.store is not None and service.intake is not None
        store = service.store

        async def open_ids() -> set[str]:
            return {c.event_id for c in await store.open_cases(1000)} & ours

        serving = asyncio.create_task(service.serve())

        async def three_cases() -> bool:
            return len(await open_ids()) == 3

        await wait_until(three_cases, 60, "three cases")
        await wait_until(lambda: asyncio.sleep(0, service.started), 30, "the page")
        assert service.intake.invalid == 1
        assert service.intake.pattern_alerts_skipped == 1
        assert service.intake.cases_opened == 3  # the repeated alert opened nothing

        # The analyst's page, in a real browser.
        def decide_in_browser() -> tuple[str, str]:
            target = alerts[1].event_id
            browser.get(f"http://127.0.0.1:{port}/")
            section = browser.wait_for(f'section[data-event-id="{target}"]')
            shown = browser.text(section)
            browser.type(
                browser.find(f'section[data-event-id="{target}"] input[name=analyst]'), "alice"
            )
            browser.type(
                browser.find(f'section[data-event-id="{target}"] input[name=notes]'), "card testing"
            )
            browser.click(
                browser.find(f'section[data-event-id="{target}"] button[value=confirmed_fraud]')
            )
            message = browser.text(browser.wait_for("#message"))
            assert not browser.find_all(f'section[data-event-id="{target}"]'), "still open"
            return shown, message

        shown, message = await asyncio.to_thread(decide_in_browser)
        assert "1235.5 EUR" in shown and merchant in shown and "electronics" in shown
        assert "amount" in shown and "+2.500 logit" in shown and "tx_count_1h" in shown
        assert "confirmed fraud" in message

        case = await store.get(alerts[1].event_id)
        assert (case.status, case.analyst, case.notes) == (
            "confirmed_fraud",
            "alice",
            "card testing",
        )
        assert case.decided_at is not None

        # A second decision on the same case is refused (409), through the JSON API.
        def decide_again() -> int:
            request = urllib.request.Request(
                f"http://127.0.0.1:{port}/api/cases/{alerts[1].event_id}/decision",
                data=json.dumps({"decision": "legitimate", "analyst": "bob"}).encode(),
                method="POST",
            )
            try:
                urllib.request.urlopen(request, timeout=10)
            except urllib.error.HTTPError as exc:
                return exc.code
            return 200

        assert await asyncio.to_thread(decide_again) == 409

        async def one_label() -> bool:
            return len(await read_topic(topics.fraud_labels.name)) >= 1

        await wait_until(one_label, 30, "the label on fraud-labels")
        service.stop()
        await serving

    labels = [
        msgspec.json.decode(r.value, type=FraudLabel)
        for r in await read_topic(topics.fraud_labels.name)
    ]
    assert [(x.event_id, x.merchant_id, x.label, x.card_id) for x in labels] == [
        (alerts[1].event_id, merchant, "fraud", "card-1")
    ]
    assert labels[0].decided_at == int(case.decided_at.timestamp() * 1000)

    # A restarted intake resumes after the stored offsets: nothing is opened twice.
    async with CaseService(settings, port=processes.free_port()) as again:
        assert again.store is not None and again.intake is not None
        serving = asyncio.create_task(again.serve())
        await asyncio.sleep(3)
        again.stop()
        await serving
        assert again.intake.cases_opened == 0
        assert {c.event_id for c in await again.store.open_cases(1000)} & ours == {
            alerts[0].event_id,
            alerts[2].event_id,
        }
    dead = await read_topic(topics.dead_letter.name)
    assert len(dead) == 1
