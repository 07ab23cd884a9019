"""The analysts' page: open cases with the transaction, its features and the reasons, and a form
per case to decide it. Plain server-rendered HTML (works without JavaScript), plus the same data
as JSON under ``/api``.

    GET  /                               the open cases (HTML)
    POST /cases/{event_id}/decision      the page's form: decision, analyst, notes -> 303 to /
    GET  /api/cases                      the open cases (JSON)
    GET  /api/cases/{event_id}           one case (JSON)
    POST /api/cases/{event_id}/decision  {"decision", "analyst", "notes"} -> the case (JSON)
    GET  /healthz
"""

# No `from __future__ import annotations`: FastAPI reads the route parameters' annotations.

import html
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qs, quote

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from cases.errors import CaseNotFound, CaseNotOpen
from cases.store import DECISIONS, Case, CaseStore

MAX_NOTES = 2_000
MAX_ANALYST = 64


class DecisionRequest(msgspec.Struct, frozen=True):
    decision: str
    analyst: str
    notes: str = ""


def _check(decision: str, analyst: str, notes: str) -> str | None:
    """Why the decision cannot be taken, or None."""
    if decision not in DECISIONS:
        return f"decision must be one of {', '.join(DECISIONS)}"
    if not analyst.strip() or len(analyst) > MAX_ANALYST:
        return f"analyst must name who decides (1 to {MAX_ANALYST} characters)"
    if len(notes) > MAX_NOTES:
        return f"notes are limited to {MAX_NOTES} characters"
    return None


def create_app(store: CaseStore, on_decision: Callable[[], None] = lambda: None) -> FastAPI:
    """The app; ``on_decision`` is called after each decision (wakes the label relay)."""
    app = FastAPI(title="rtml cases", docs_url=None, redoc_url=None)

    async def decide(event_id: str, decision: str, analyst: str, notes: str) -> Case:
        case, _ = await store.decide(
            event_id,
            decision,  # type: ignore[arg-type]  # checked by _check
            analyst=analyst.strip(),
            notes=notes.strip(),
        )
        on_decision()
        return case

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/", response_class=HTMLResponse)
    async def page(message: str = "", error: str = "") -> HTMLResponse:
        cases = await store.open_cases()
        return HTMLResponse(render_page(cases, message=message, error=error))

    @app.post("/cases/{event_id}/decision")
    async def form_decision(event_id: str, request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        decision = form.get("decision", [""])[0]
        analyst = form.get("analyst", [""])[0]
        notes = form.get("notes", [""])[0]
        problem = _check(decision, analyst, notes)
        if problem is None:
            try:
                await decide(event_id, decision, analyst, notes)
            except (CaseNotFound, CaseNotOpen) as exc:
                problem = str(exc)
        if problem is not None:
            return RedirectResponse(f"/?error={quote(problem)}", status_code=303)
        label = decision.replace("_", " ")
        return RedirectResponse(f"/?message={quote(f'{event_id}: {label}')}", status_code=303)

    @app.get("/api/cases")
    async def api_cases() -> JSONResponse:
        return JSONResponse([case.to_json() for case in await store.open_cases()])

    @app.get("/api/cases/{event_id}")
    async def api_case(event_id: str) -> JSONResponse:
        try:
            return JSONResponse((await store.get(event_id)).to_json())
        except CaseNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    @app.post("/api/cases/{event_id}/decision")
    async def api_decision(event_id: str, request: Request) -> JSONResponse:
        try:
            body = msgspec.json.decode(await request.body(), type=DecisionRequest)
        except msgspec.DecodeError as exc:
            return JSONResponse({"error": f"invalid body: {exc}"}, status_code=422)
        problem = _check(body.decision, body.analyst, body.notes)
        if problem is not None:
            return JSONResponse({"error": problem}, status_code=422)
        try:
            case = await decide(event_id, body.decision, body.analyst, body.notes)
        except CaseNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        except CaseNotOpen as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse(case.to_json())

    return app


# --- the page (pure) ---------------------------------------------------------------------------

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem; color: #222; }
.case { border: 1px solid #ccc; border-radius: 6px; padding: 1rem; margin-bottom: 1rem; }
.case h2 { margin: 0 0 .5rem 0; font-size: 1.1rem; }
table { border-collapse: collapse; margin: .5rem 0; }
td, th { padding: .15rem .6rem; text-align: left; border-bottom: 1px solid #eee; }
.score { font-weight: bold; color: #b00; }
.message { background: #e8f5e9; padding: .5rem; } .error { background: #fdecea; padding: .5rem; }
form { margin-top: .5rem; } input, textarea { margin-right: .5rem; }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _value(value: Any) -> str:
    if value is None:
        return "missing"
    if isinstance(value, float):
        return f"{value:.4g}"
    return _e(value)


def render_case(case: Case) -> str:
    tx = case.alert.get("transaction") or {}
    slug = _e(case.event_id)
    if tx:
        tx_rows = "".join(
            f"<tr><th>{label}</th><td>{text}</td></tr>"
            for label, text in (
                ("amount", f"{_e(tx.get('amount'))} {_e(tx.get('currency'))}"),
                ("merchant", f"{_e(tx.get('merchant_id'))} ({_e(tx.get('merchant_category'))})"),
                ("channel", _e(tx.get("channel"))),
                ("user", _e(tx.get("user_id"))),
                ("location", f"{_e(tx.get('lat'))}, {_e(tx.get('lon'))}"),
                ("time", _time(tx.get("event_time"))),
            )
        )
        transaction = f'<table class="transaction">{tx_rows}</table>'
    else:
        transaction = "<p>The alert does not carry its transaction.</p>"
    reasons = "".join(
        f'<li class="reason"><b>{_e(r["feature"])}</b> = {_value(r.get("value"))} '
        f"(+{r['contribution']:.3f} logit)</li>"
        for r in case.alert.get("reasons", [])
    )
    features = "".join(
        f"<tr><td>{_e(name)}</td><td>{_value(value)}</td></tr>"
        for name, value in sorted(case.alert.get("features", {}).items())
    )
    buttons = "".join(
        f'<button type="submit" name="decision" value="{d}">{d.replace("_", " ")}</button>'
        for d in DECISIONS
    )
    return f"""
<section class="case" id="case-{slug}" data-event-id="{slug}">
  <h2>{slug} &middot; card {_e(case.card_id)} &middot;
      score <span class="score">{case.score:.3f}</span></h2>
  <div>alerted {_e(case.created_at.strftime("%Y-%m-%d %H:%M:%S %Z"))},
       model {_e(case.model_version)}</div>
  <h3>Transaction</h3>{transaction}
  <h3>Reasons</h3><ul class="reasons">{reasons or "<li>none given</li>"}</ul>
  <details><summary>Features</summary><table class="features">{features}</table></details>
  <form method="post" action="/cases/{quote(case.event_id, safe="")}/decision">
    <input name="analyst" placeholder="analyst" required maxlength="{MAX_ANALYST}">
    <input name="notes" placeholder="notes" maxlength="{MAX_NOTES}">
    {buttons}
  </form>
</section>"""


def render_page(cases: list[Case], *, message: str = "", error: str = "") -> str:
    banner = ""
    if message:
        banner += f'<p class="message" id="message">Decided {_e(message)}</p>'
    if error:
        banner += f'<p class="error" id="error">{_e(error)}</p>'
    body = "".join(render_case(case) for case in cases) or '<p id="empty">No open cases.</p>'
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>rtml cases</title>
<style>{_STYLE}</style></head>
<body><h1>Open fraud cases (<span id="open-count">{len(cases)}</span>)</h1>
{banner}{body}
</body></html>"""
