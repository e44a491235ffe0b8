"""Turning request input into the ledger's identifiers, with the contract's own errors."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Path, Query
from fastapi.encoders import jsonable_encoder

from protocolo.core.cpf import normalise_cpf
from protocolo.core.errors import EventRejected
from protocolo.core.protocol_number import normalise_protocol_number

Channel = Literal["PHONE", "EMAIL", "WEB_FORM", "CHAT", "APP"]
ServiceType = Literal["MOBILE", "FIXED_LINE", "BROADBAND", "PAY_TV", "BANKING", "GENERAL"]
DeliveryChannel = Literal["EMAIL", "APP", "WEB", "POSTAL_MAIL", "IN_PERSON"]
RejectionReason = Literal["NOT_FOUND", "RETENTION_EXPIRED", "NOT_RECORDED", "IDENTITY_NOT_VERIFIED"]

Purpose = Annotated[str | None, Query(min_length=3, max_length=500,
                                      description="Why: required for every audited access.")]
Page = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=200)]
#: Text PostgreSQL can store: no NUL character (it would fail the lookup, not the input).
NO_NUL = r"^[^\x00]*$"
ShortText = Annotated[str | None, Query(min_length=1, max_length=200, pattern=NO_NUL)]
PathId = Annotated[str, Path(min_length=1, max_length=200, pattern=NO_NUL)]
Moment = Annotated[datetime | None, Query()]


def protocol(value: str, field: str = "protocol_number") -> str:
    return normalise_protocol_number(value, field)


def cpf(value: str, field: str = "cpf") -> str:
    return normalise_cpf(value, field)


def need_purpose(purpose: str | None, field: str = "purpose") -> str:
    if purpose is None or not purpose.strip():
        raise EventRejected(field, "required", "say why: this access is recorded on the ledger")
    return purpose.strip()


def encoded(row: dict[str, Any]) -> dict[str, Any]:
    """A row as JSON-ready values (times ISO 8601, UUIDs as text)."""
    out: dict[str, Any] = jsonable_encoder(row)
    return out
