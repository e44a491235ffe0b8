"""``summary.html``: what a bundle's evidence shows, for a person (Portuguese, English under
each heading).

Every statement is taken from the ledger's read model (the contact's timeline) and names
the rule it is measured against, with the rule's source as DOMAIN.md gives it. Personal
data appears only as the customer's blind-index pseudonym unless the bundle was written
with ``--reveal`` and a legal basis, which the page then states.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

LOCAL = ZoneInfo("America/Sao_Paulo")


@dataclass(frozen=True)
class Rule:
    pt: str
    en: str
    source: str


#: The rules a contact's compliance flags are measured against (DOMAIN.md, "Rules").
PROTOCOL_AT_START = Rule(
    "Cada atendimento recebe um número de protocolo, informado ao cliente no início do atendimento.",
    "Each contact gets a protocol number, told to the customer at the start of the contact.",
    "Decreto 6.523/2008 art. 15; Anatel RGC (Res. 632/2014) art. 7")
PROTOCOL_CONFIRMED = Rule(
    "O número de protocolo também é enviado por SMS ou e-mail, com data e hora, em até 24 h.",
    "The protocol number is also sent by SMS or e-mail with date and time, within 24 h.",
    "Anatel RGC art. 7 §3")
NOTICE_AT_START = Rule(
    "O cliente é avisado, no início, de que a ligação é gravada.",
    "The customer is told at the start that the call is recorded.",
    "Decreto 6.523/2008; Anatel rules")
RECORDING_RETENTION = Rule(
    "As gravações são mantidas pelo prazo do perfil (SAC: ≥ 90 dias; telecom: ≥ 180 dias).",
    "Recordings are kept for the profile's period (SAC ≥ 90 days; telecom ≥ 180 days).",
    "Decreto 11.034/2022 art. 12 §3; Anatel RGC art. 26 §2–3")
RECORDING_DELIVERY = Rule(
    "A gravação pedida é entregue, gratuitamente, em até 10 dias do pedido.",
    "A requested recording is delivered, free, within 10 days of the request.",
    "Anatel RGC art. 26 §4; Portaria SDE/MJ 49/2009")


@dataclass(frozen=True)
class SummaryRecord:
    event_type: str
    occurred_at: datetime | None
    partition: int
    offset: int
    leaf_index: int
    checkpoint_size: int


@dataclass(frozen=True)
class SummaryFacts:
    protocol_number: str
    created_at: str
    interaction: dict[str, Any]
    compliance: dict[str, Any]
    customer: dict[str, Any]  # pseudonym | clear fields | erased
    recordings: Sequence[dict[str, Any]]
    requests: Sequence[dict[str, Any]]
    records: Sequence[SummaryRecord]
    profile: str | None = None
    start_disclosure_seconds: int | None = None
    profile_source: str | None = None
    legal_basis: str | None = None
    checkpoints: Sequence[str] = field(default_factory=tuple)


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value))


def _when(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M:%S (horário de Brasília)")
    return "—" if value is None else str(value)


def _flag(value: bool | None) -> str:
    return {True: "SIM / YES", False: "NÃO / NO", None: "não se aplica / n/a"}[value]


def _heading(pt: str, en: str) -> str:
    return f"<h2>{_e(pt)}</h2>\n<p class=en>{_e(en)}</p>\n"


def _rule(rule: Rule) -> str:
    return (f"<p class=rule>Regra: {_e(rule.pt)}<br><span class=en>Rule: {_e(rule.en)}</span>"
            f"<br>Fonte / source: {_e(rule.source)}</p>\n")


def summary_html(f: SummaryFacts) -> bytes:
    i, c = f.interaction, f.compliance
    out = ["<!DOCTYPE html>\n<html lang=pt-BR><head><meta charset=utf-8>",
           f"<title>Prova de atendimento — protocolo {_e(f.protocol_number)}</title>",
           "<style>body{font-family:sans-serif;max-width:60em;margin:2em auto}.en{color:#555;"
           "font-style:italic;margin-top:-.6em}.rule{font-size:90%;border-left:3px solid #999;"
           "padding-left:.6em}td,th{border:1px solid #ccc;padding:.2em .5em}</style></head><body>\n",
           f"<h1>Prova de atendimento — protocolo {_e(f.protocol_number)}</h1>\n"
           "<p class=en>Proof of service — what the signed ledger records show</p>\n",
           f"<p>Gerado em / generated at {_e(f.created_at)}. Tudo o que segue é lido dos registros "
           "deste pacote; verifique-os com <code>verify.py</code> (README.txt).<br><span class=en>"
           "Everything below is read from the records in this bundle; check them with verify.py.</span></p>\n"]
    out.append(_heading("Cliente", "Customer"))
    cust = f.customer
    if cust.get("erased"):
        out.append("<p>Dados pessoais APAGADOS a pedido do titular (LGPD art. 18); os registros "
                   "continuam verificáveis.<br><span class=en>Personal data ERASED on the data "
                   "subject's request; the records still verify.</span></p>\n")
    elif cust.get("revealed"):
        out.append(f"<p>Nome / name: {_e(cust.get('name'))}<br>CPF: {_e(cust.get('cpf'))}<br>"
                   f"Código / customer code: {_e(cust.get('customer_code'))}</p>\n"
                   f"<p><b>Dados revelados com base legal / revealed under legal basis:</b> "
                   f"{_e(f.legal_basis)}</p>\n")
    else:
        out.append(f"<p>Pseudônimo (índice cego) / pseudonym (blind index): "
                   f"<code>{_e(cust.get('pseudonym') or 'não identificado / not identified')}</code>"
                   "<br>Dados pessoais selados; só aparecem com <code>--reveal --legal-basis</code>."
                   "<br><span class=en>Personal data sealed; shown only with --reveal and a legal basis."
                   "</span></p>\n")
    out.append(_heading("Atendimento", "Contact"))
    out.append(f"<p>Canal / channel: {_e(i.get('channel'))}; tipo / service: {_e(i.get('service_type'))}; "
               f"aberto em / opened at: {_e(_when(i.get('opened_at')))}; encerrado em / closed at: "
               f"{_e(_when(i.get('closed_at')))}; perfil legal / policy profile: {_e(f.profile)}"
               + (f" ({_e(f.profile_source)})" if f.profile_source else "") + "</p>\n")
    out.append(_heading("Quando o número de protocolo foi informado", "When the protocol number was told"))
    window = (f" (janela / window: {f.start_disclosure_seconds} s)" if f.start_disclosure_seconds else "")
    out.append(f"<p>Informado em / told at: {_e(_when(i.get('protocol_disclosed_at')))}. "
               f"No início / at the start{_e(window)}: <b>{_flag(c.get('protocol_disclosed_at_start'))}</b></p>\n")
    out.append(_rule(PROTOCOL_AT_START))
    out.append(f"<p>Confirmação por SMS/e-mail / confirmation: {_e(_when(i.get('protocol_confirmed_at')))}; "
               f"no prazo / in time: <b>{_flag(c.get('protocol_confirmed_in_time'))}</b></p>\n")
    out.append(_rule(PROTOCOL_CONFIRMED))
    out.append(_heading("Aviso de gravação no início", "Recording notice at the start"))
    out.append(f"<p>Aviso em / notice at: {_e(_when(i.get('recording_notice_at')))}; no início / at the "
               f"start: <b>{_flag(c.get('recording_notice_at_start'))}</b></p>\n")
    out.append(_rule(NOTICE_AT_START))
    out.append(_heading("Gravação: resumo criptográfico e guarda", "Recording: digest and retention"))
    if not f.recordings:
        out.append("<p>Nenhuma gravação registrada. <span class=en>No recording on record.</span></p>\n")
    for r in f.recordings:
        deleted = (f"; apagada em / deleted at {_e(_when(r.get('deleted_at')))}"
                   f" ({_e(r.get('deletion_reason'))})" if r.get("status") == "deleted" else "")
        out.append(f"<p>Gravação / recording {_e(r.get('recording_id'))}: SHA-256 "
                   f"<code>{_e(r.get('sha256'))}</code>; capturada em / captured at "
                   f"{_e(_when(r.get('captured_at')))}; guarda até / retained until "
                   f"{_e(_when(r.get('retain_until')))} (perfil / profile {_e(r.get('retention_profile'))}, "
                   f"{_e(r.get('retention_days'))} dias/days); situação / status {_e(r.get('status'))}{deleted}</p>\n")
    out.append(_rule(RECORDING_RETENTION))
    out.append(_heading("Pedidos de gravação e entrega", "Recording requests and delivery"))
    if not f.requests:
        out.append("<p>Nenhum pedido. <span class=en>No request.</span></p>\n")
    for q in f.requests:
        out.append(f"<p>Pedido / request {_e(q.get('request_id'))}: feito em / made at "
                   f"{_e(_when(q.get('requested_at')))}; prazo / due {_e(_when(q.get('due_at')))}; "
                   f"situação / status {_e(q.get('status'))}; entregue em / delivered at "
                   f"{_e(_when(q.get('fulfilled_at')))}; no prazo / in time: "
                   f"<b>{_flag(q.get('fulfilled_in_time'))}</b>"
                   + (f"; SHA-256 entregue / delivered <code>{_e(q.get('delivered_sha256'))}</code>"
                      if q.get("delivered_sha256") else "") + "</p>\n")
    out.append(_rule(RECORDING_DELIVERY))
    out.append(_heading("Registros e provas", "Records and proofs"))
    out.append("<table><tr><th>evento / event</th><th>ocorrido / occurred</th><th>partição</th>"
               "<th>offset</th><th>folha / leaf</th><th>checkpoint</th></tr>\n")
    for rec in f.records:
        out.append(f"<tr><td>{_e(rec.event_type)}</td><td>{_e(_when(rec.occurred_at))}</td>"
                   f"<td>{rec.partition}</td><td>{rec.offset}</td><td>{rec.leaf_index}</td>"
                   f"<td>{rec.checkpoint_size}</td></tr>\n")
    out.append("</table>\n</body></html>\n")
    return "".join(out).encode("utf-8")
