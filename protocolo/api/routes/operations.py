"""Liveness, readiness and Prometheus metrics (no credential: for the platform)."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from protocolo.projections import history

from ..auth import Services
from ..lag import KAFKA_UNREACHABLE, POSTGRESQL_UNREACHABLE, current_lag, lag_summary

log = logging.getLogger(__name__)

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka, PostgreSQL and the in-process projector; the projection lag",
            responses={503: {"description": "a dependency is down; `checks` says which, without "
                                            "exception text (that goes to the server log)"}})
def readyz(svc: Services) -> JSONResponse:
    checks: dict[str, Any] = {"postgresql": _postgresql(svc)}
    lag = lag_summary(svc)
    kafka_down = not lag["measured"] and lag["error"] == KAFKA_UNREACHABLE
    checks["kafka"] = {"ok": False, "reason": KAFKA_UNREACHABLE} if kafka_down else {"ok": True}
    checks["projection"] = lag
    if svc.projector_health is not None:
        checks["projector"] = svc.projector_health().as_check()
    ready = all(check["ok"] for name, check in checks.items() if name != "projection")
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, "checks": checks})


def _postgresql(svc: Services) -> dict[str, Any]:
    try:
        with svc.ledger.connection() as conn:
            conn.execute("SELECT 1 FROM projector_offsets LIMIT 1")
    except psycopg.OperationalError as exc:
        log.warning("readyz: PostgreSQL: %s", exc)
        return {"ok": False, "reason": POSTGRESQL_UNREACHABLE}
    except psycopg.Error as exc:
        log.warning("readyz: PostgreSQL: %s", exc)
        return {"ok": False, "reason": "the ledger database is not ready (see the server log)"}
    return {"ok": True}


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics (text format)")
def metrics(svc: Services) -> PlainTextResponse:
    lag, _ = current_lag(svc)
    try:
        with svc.ledger.connection() as conn:
            counts: dict[str, int] | None = history.ledger_counts(conn)
    except Exception:  # noqa: BLE001 - the scrape still gets latency and lag
        counts = None
    behind = None
    if lag is not None:
        behind = {p: end - lag.projected.get(p, 0) for p, end in lag.log_end.items()}
    return PlainTextResponse(svc.metrics.render(behind, counts), media_type="text/plain; version=0.0.4")
