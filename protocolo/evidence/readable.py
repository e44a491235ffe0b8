"""What a person reads in a bundle, derived only from the records' signed bytes.

``record.json`` and ``summary.html`` (docs/evidence-format.md §9.5) are pure functions of
each record's key and value bytes, the bundled writer schemas and the signed manifest's
``subject``, ``created``, ``rules``, ``declared`` and ``pending``: never of a database
column or a view. The writer calls these functions to make the files; the offline verifier
calls the same functions on the bytes it has proven and requires the bundle's files to be
byte-identical, naming the file and the first field or line that differs. So a readable
part can only say what the signed records say.

Times in the records are integer microseconds (UTC); the summary shows them in UTC and in
Brasília time as the fixed offset UTC−03:00 (Brazil has kept no daylight saving time since
2019; a fixed offset keeps the page the same on every verifier, whatever its tz database).
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from typing import Any

from protocolo.evidence.avro import AvroError, decode, parse_schema

AVRO_MAGIC = b"\xc3\x01"
BRASILIA = timezone(timedelta(hours=-3), "UTC-03:00")


def canonical_json(value: Any) -> bytes:
    """The bundle's JSON form: sorted keys, indent 2, UTF-8 as is, final newline."""
    return (json.dumps(value, sort_keys=True, indent=2, ensure_ascii=False) + "\n").encode(
        "utf-8", "backslashreplace")


def readable_record(topic: str, partition: int, offset: int, leaf_index: int, key: bytes | None,
                    value: bytes, schemas: Mapping[str, bytes]) -> dict[str, Any]:
    """``record.json``'s content: the record's place and its value decoded with its writer
    schema (``schemas``: fingerprint hex → Parsing Canonical Form). A value that cannot be
    decoded says why under ``undecodable`` (deterministically, so the verifier agrees)."""
    doc: dict[str, Any] = {"topic": topic, "partition": partition, "offset": offset,
                           "leaf_index": leaf_index, "key": None, "key_hex": None,
                           "schema_fingerprint": None, "event_type": None, "fields": None}
    if key is not None:
        doc["key_hex"] = key.hex()
        try:
            doc["key"] = key.decode("utf-8")
        except UnicodeDecodeError:
            doc["key"] = None
    if value[:2] != AVRO_MAGIC or len(value) < 10:
        doc["undecodable"] = "the value is not Avro single-object encoded"
        return doc
    fingerprint = value[2:10].hex()
    doc["schema_fingerprint"] = fingerprint
    schema_text = schemas.get(fingerprint)
    if schema_text is None:
        doc["undecodable"] = f"no schemas/{fingerprint}.avsc"
        return doc
    try:
        schema = _schema(bytes(schema_text))
        doc["fields"] = decode(schema, value[10:])
    except AvroError as exc:
        doc["undecodable"] = exc.detail
        return doc
    name = schema.get("name") if isinstance(schema, dict) else None
    doc["event_type"] = str(name).rpartition(".")[2] if isinstance(name, str) else None
    return doc


@lru_cache(maxsize=64)
def _schema(text: bytes) -> Any:
    """A bundled schema parsed once per verification run (records share a few schemas;
    the decoder never mutates the parsed schema)."""
    return parse_schema(text)


@dataclass(frozen=True)
class ProvenRecord:
    """A record's readable content and the size of the checkpoint it is proven in."""

    doc: Mapping[str, Any]
    checkpoint_size: int

    @property
    def fields(self) -> Mapping[str, Any]:
        f = self.doc.get("fields")
        return f if isinstance(f, dict) else {}

    @property
    def event_type(self) -> str:
        return str(self.doc.get("event_type") or "?")

    @property
    def occurred_at(self) -> int | None:
        meta = self.fields.get("meta")
        at = meta.get("occurred_at") if isinstance(meta, dict) else None
        return at if isinstance(at, int) and not isinstance(at, bool) else None


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def when(micros: int | None) -> str:
    """A record time as people read it: Brasília time, then UTC."""
    if micros is None:
        return "—"
    try:
        at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    except OverflowError:
        return f"{micros} µs"
    return (f"{at.astimezone(BRASILIA).strftime('%Y-%m-%d %H:%M:%S')} (Brasília, UTC−3) = "
            f"{at.strftime('%Y-%m-%dT%H:%M:%S.%fZ')}")


def _flag(value: bool | None) -> str:
    return {True: "SIM / YES", False: "NÃO / NO", None: "não se aplica / n/a"}[value]


def _heading(pt: str, en: str) -> str:
    return f"<h2>{_e(pt)}</h2>\n<p class=en>{_e(en)}</p>\n"


def _rule(pt: str, en: str, source: str) -> str:
    return (f"<p class=rule>Regra: {_e(pt)}<br><span class=en>Rule: {_e(en)}</span>"
            f"<br>Fonte / source: {_e(source)}</p>\n")


def _int(rules: Mapping[str, Any], name: str) -> int | None:
    v = rules.get(name)
    return v if isinstance(v, int) and not isinstance(v, bool) else None


def _first(records: Sequence[ProvenRecord], event: str, **match: Any) -> ProvenRecord | None:
    found = [r for r in records if r.event_type == event and r.occurred_at is not None
             and all(r.fields.get(k) == v for k, v in match.items())]
    return min(found, key=lambda r: r.occurred_at or 0) if found else None


def _within(at: ProvenRecord | None, start: int | None, seconds: int | None) -> bool | None:
    if at is None or at.occurred_at is None or start is None:
        return False if start is not None else None
    if seconds is None:
        return None
    return at.occurred_at <= start + seconds * 1_000_000


_HEAD = ("<!DOCTYPE html>\n<html lang=pt-BR><head><meta charset=utf-8>"
         "<title>Prova de atendimento — {subject}</title>"
         "<style>body{{font-family:sans-serif;max-width:60em;margin:2em auto}}.en{{color:#555;"
         "font-style:italic;margin-top:-.6em}}.rule{{font-size:90%;border-left:3px solid #999;"
         "padding-left:.6em}}td,th{{border:1px solid #ccc;padding:.2em .5em}}</style></head><body>\n")


def summary_html(subject: Mapping[str, Any], created_at: str, rules: Mapping[str, Any],
                 declared: Mapping[str, Any], records: Sequence[ProvenRecord],
                 pending: Sequence[Mapping[str, Any]]) -> bytes:
    """``summary.html``: every fact read from ``records`` (decoded from their bytes) and the
    signed manifest; nothing else. Deterministic: the verifier regenerates it byte for byte."""
    protocol = subject.get("protocol_number")
    title = f"protocolo {protocol}" if protocol else "cliente / customer"
    out = [_HEAD.format(subject=_e(title)),
           f"<h1>Prova de atendimento — {_e(title)}</h1>\n"
           "<p class=en>Proof of service — what the signed ledger records show</p>\n",
           f"<p>Gerado em / generated at {_e(created_at)}. Tudo o que segue é lido dos bytes "
           "assinados dos registros deste pacote e o verificador o recalcula; verifique com o "
           "verificador publicado (README.txt).<br><span class=en>Everything below is decoded "
           "from the signed bytes of the records in this bundle, and the verifier recomputes it; "
           "check it with the published verifier (README.txt).</span></p>\n"]
    out += _customer(records, declared)
    out += _contact(records, rules)
    out += _recordings(records)
    out += _requests(records, rules)
    out += _table(records, pending)
    out.append("</body></html>\n")
    return "".join(out).encode("utf-8", "backslashreplace")


def _customer(records: Sequence[ProvenRecord], declared: Mapping[str, Any]) -> list[str]:
    out = [_heading("Cliente", "Customer")]
    opened = _first(records, "ContactOpened")
    customer = opened.fields.get("customer") if opened else None
    pseudonym = None
    if isinstance(customer, dict):
        pseudonym = customer.get("cpf_index") or customer.get("customer_code_index")
    out.append(f"<p>Pseudônimo (índice cego) / pseudonym (blind index): "
               f"<code>{_e(pseudonym or 'não identificado / not identified')}</code>"
               "<br>Dados pessoais selados nos registros.<br><span class=en>Personal data is "
               "sealed inside the records.</span></p>\n")
    stated = declared.get("customer")
    if isinstance(stated, dict) and stated:
        items = "; ".join(f"{_e(k)}: {_e(v)}" for k, v in sorted(stated.items()))
        out.append("<p><b>Declarado por quem gerou o pacote, não provado pelos registros / "
                   f"stated by the bundle's maker, not proven by the records:</b> {items}</p>\n")
    return out


def _contact(records: Sequence[ProvenRecord], rules: Mapping[str, Any]) -> list[str]:
    opened = _first(records, "ContactOpened")
    closed = _first(records, "ContactClosed")
    start = opened.occurred_at if opened else None
    f = opened.fields if opened else {}
    profile = rules.get("profile")
    source = rules.get("source")
    out = [_heading("Atendimento", "Contact"),
           f"<p>Canal / channel: {_e(f.get('channel'))}; tipo / service: {_e(f.get('service_type'))}; "
           f"aberto em / opened at: {_e(when(start))}; encerrado em / closed at: "
           f"{_e(when(closed.occurred_at if closed else None))}; resultado / outcome: "
           f"<b>{_e(closed.fields.get('outcome') if closed else '—')}</b>; perfil legal / policy "
           f"profile: {_e(profile)}" + (f" ({_e(source)})" if source else "") + "</p>\n"]
    seconds = _int(rules, "start_disclosure_seconds")
    hours = _int(rules, "protocol_confirmation_hours")
    told = _first(records, "DisclosureMade", kind="PROTOCOL_NUMBER")
    window = f" (janela / window: {seconds} s)" if seconds is not None else ""
    out.append(_heading("Quando o número de protocolo foi informado",
                        "When the protocol number was told"))
    out.append(f"<p>Informado em / told at: {_e(when(told.occurred_at if told else None))}. "
               f"No início / at the start{_e(window)}: <b>{_flag(_within(told, start, seconds))}</b></p>\n")
    out.append(_rule("Cada atendimento recebe um número de protocolo, informado ao cliente no início.",
                     "Each contact gets a protocol number, told to the customer at the start.",
                     "Decreto 6.523/2008 art. 15; Anatel RGC (Res. 632/2014) art. 7"))
    confirmed = _first(records, "DisclosureMade", kind="PROTOCOL_CONFIRMATION")
    out.append(f"<p>Confirmação por SMS/e-mail / confirmation: "
               f"{_e(when(confirmed.occurred_at if confirmed else None))}; no prazo / in time"
               f"{_e(f' ({hours} h)' if hours is not None else '')}: "
               f"<b>{_flag(_within(confirmed, start, None if hours is None else hours * 3600))}</b></p>\n")
    out.append(_rule("O número de protocolo também é enviado por SMS ou e-mail, com data e hora.",
                     "The protocol number is also sent by SMS or e-mail with date and time.",
                     "Anatel RGC art. 7 §3"))
    notice = _first(records, "DisclosureMade", kind="RECORDING_NOTICE")
    recorded = f.get("recorded") if opened else None
    at_start = _within(notice, start, seconds) if recorded is not False else None
    out.append(_heading("Aviso de gravação no início", "Recording notice at the start"))
    out.append(f"<p>Aviso em / notice at: {_e(when(notice.occurred_at if notice else None))}; no início / "
               f"at the start: <b>{_flag(at_start)}</b></p>\n")
    out.append(_rule("O cliente é avisado, no início, de que a ligação é gravada.",
                     "The customer is told at the start that the call is recorded.",
                     "Decreto 6.523/2008; Anatel rules"))
    return out


def _recordings(records: Sequence[ProvenRecord]) -> list[str]:
    out = [_heading("Gravação: resumo criptográfico e guarda", "Recording: digest and retention")]
    captured = [r for r in records if r.event_type == "RecordingCaptured"]
    if not captured:
        out.append("<p>Nenhuma gravação registrada. <span class=en>No recording on record.</span></p>\n")
    for r in captured:
        f = r.fields
        days = f.get("retention_days")
        until = (r.occurred_at + days * 86_400_000_000 if r.occurred_at is not None
                 and isinstance(days, int) and not isinstance(days, bool) else None)
        deleted = _first(records, "RecordingDeleted", recording_id=f.get("recording_id"))
        gone = (f"; apagada em / deleted at {_e(when(deleted.occurred_at))} "
                f"({_e(deleted.fields.get('reason'))})" if deleted else "")
        out.append(f"<p>Gravação / recording {_e(f.get('recording_id'))}: SHA-256 "
                   f"<code>{_e(f.get('sha256'))}</code>; capturada em / captured at "
                   f"{_e(when(r.occurred_at))}; guarda até / retained until {_e(when(until))} "
                   f"(perfil / profile {_e(f.get('retention_profile'))}, {_e(days)} dias/days){gone}</p>\n")
    out.append(_rule("As gravações são mantidas pelo prazo do perfil (SAC: ≥ 90 dias; telecom: ≥ 180 dias).",
                     "Recordings are kept for the profile's period (SAC ≥ 90 days; telecom ≥ 180 days).",
                     "Decreto 11.034/2022 art. 12 §3; Anatel RGC art. 26 §2–3"))
    return out


def _requests(records: Sequence[ProvenRecord], rules: Mapping[str, Any]) -> list[str]:
    out = [_heading("Pedidos de gravação e entrega", "Recording requests and delivery")]
    asked = [r for r in records if r.event_type == "RetrievalRequested"]
    days = _int(rules, "recording_delivery_days")
    if not asked:
        out.append("<p>Nenhum pedido. <span class=en>No request.</span></p>\n")
    for q in asked:
        rid = q.fields.get("request_id")
        done = _first(records, "RetrievalFulfilled", request_id=rid)
        rejected = _first(records, "RetrievalRejected", request_id=rid)
        due = (q.occurred_at + days * 86_400_000_000 if q.occurred_at is not None
               and days is not None else None)
        status = "FULFILLED" if done else "REJECTED" if rejected else "OPEN"
        in_time = None if done is None or due is None else (done.occurred_at or 0) <= due
        out.append(f"<p>Pedido / request {_e(rid)}: feito em / made at {_e(when(q.occurred_at))}; "
                   f"prazo / due {_e(when(due))}; situação / status {status}; entregue em / "
                   f"delivered at {_e(when(done.occurred_at if done else None))}; no prazo / in "
                   f"time: <b>{_flag(in_time)}</b>"
                   + (f"; SHA-256 entregue / delivered <code>{_e(done.fields.get('delivered_sha256'))}</code>"
                      if done else "") + "</p>\n")
    out.append(_rule("A gravação pedida é entregue, gratuitamente, no prazo do perfil (10 dias).",
                     "A requested recording is delivered, free, within the profile's period (10 days).",
                     "Anatel RGC art. 26 §4; Portaria SDE/MJ 49/2009"))
    return out


def _table(records: Sequence[ProvenRecord], pending: Sequence[Mapping[str, Any]]) -> list[str]:
    out = [_heading("Registros e provas", "Records and proofs"),
           "<table><tr><th>evento / event</th><th>ocorrido / occurred</th><th>partição</th>"
           "<th>offset</th><th>folha / leaf</th><th>checkpoint</th></tr>\n"]
    for r in records:
        out.append(f"<tr><td>{_e(r.event_type)}</td><td>{_e(when(r.occurred_at))}</td>"
                   f"<td>{_e(r.doc.get('partition'))}</td><td>{_e(r.doc.get('offset'))}</td>"
                   f"<td>{_e(r.doc.get('leaf_index'))}</td><td>{_e(r.checkpoint_size)}</td></tr>\n")
    out.append("</table>\n")
    if pending:
        out.append(_heading("Ainda sem checkpoint (não provados aqui)",
                            "Not yet checkpointed (not proven here)"))
        out.append("<ul>\n" + "".join(
            f"<li>partição / partition {_e(p.get('partition'))}, offset {_e(p.get('offset'))}, "
            f"folha / leaf {_e(p.get('leaf_index'))}</li>\n" for p in pending) + "</ul>\n")
    return out


__all__ = ["ProvenRecord", "canonical_json", "readable_record", "summary_html", "when"]
