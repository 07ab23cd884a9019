"""The case page's rendering and input checks (pure: no database, no server)."""

from __future__ import annotations

from datetime import UTC, datetime

from cases.store import Case
from cases.web import _check, render_page


def case(**alert: object) -> Case:
    return Case(
        event_id="tx-<1>",
        card_id="card-1",
        merchant_id="m-1",
        score=0.93,
        model_version="v1",
        event_time=1_700_000_000_000,
        alert=alert,
        status="open",
        analyst=None,
        notes="",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        decided_at=None,
    )


def test_page_shows_transaction_reasons_and_a_form_per_case_escaped() -> None:
    tx = {"amount": 99.5, "currency": "EUR", "merchant_id": "m-<script>", "event_time": 0}
    reasons = [{"feature": "amount", "value": 99.5, "contribution": 1.5}]
    page = render_page([case(transaction=tx, reasons=reasons, features={"amount": 99.5})])
    assert 'data-event-id="tx-&lt;1&gt;"' in page
    assert "m-&lt;script&gt;" in page and "<script>" not in page
    assert "99.5 EUR" in page and "+1.500 logit" in page
    assert 'action="/cases/tx-%3C1%3E/decision"' in page
    assert 'value="confirmed_fraud"' in page and 'value="legitimate"' in page


def test_page_without_cases_or_transaction() -> None:
    assert 'id="empty"' in render_page([])
    assert "does not carry its transaction" in render_page([case()])


def test_decisions_are_checked_with_a_reason() -> None:
    assert _check("confirmed_fraud", "alice", "") is None
    assert "decision must be one of" in (_check("maybe", "alice", "") or "")
    assert "analyst" in (_check("legitimate", "  ", "") or "")
    assert "notes" in (_check("legitimate", "alice", "x" * 5000) or "")
