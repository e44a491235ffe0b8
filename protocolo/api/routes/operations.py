"""Liveness, readiness and Prometheus metrics (no credential: for the platform)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, PlainTextResponse

from protocolo.projections import history

from ..auth import Services
from ..lag import current_lag, lag_summary

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="The process answers")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Kafka and PostgreSQL reachable; the projection lag",
            responses={503: {"description": "Kafka or PostgreSQL unreachable"}})
def readyz(svc: Services) -> JSONResponse:
    checks: dict[str, Any] = {}
    try:
        with svc.ledger.connection() as conn:
            conn.execute("SELECT 1 FROM projector_offsets LIMIT 1")
        checks["postgresql"] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - reported, not raised
        checks["postgresql"] = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    lag = lag_summary(svc)
    checks["kafka"] = {"ok": lag["measured"], **({"error": lag["error"]} if not lag["measured"] else {})}
    checks["projection"] = lag
    ready = checks["postgresql"]["ok"] and checks["kafka"]["ok"]
    return JSONResponse(status_code=200 if ready else 503, content={"ready": ready, "checks": checks})


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
