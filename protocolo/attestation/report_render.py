"""The compliance report's formats: JSON, CSV, HTML (inline SVG chart, no JavaScript), PDF.

Charts are drawn on the server with matplotlib (Agg, no display): an SVG embedded in the
HTML and the same figure in the PDF, which matplotlib's own PDF backend writes (text pages
and chart pages; no second PDF library). Each broken figure lists its protocol numbers with
the partition and offset of the evidence in the export; in HTML each number links to the
contact's proof-of-service bundle on the API.
"""

from __future__ import annotations

import csv
import html
import io
import json
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

FORMATS = ("json", "csv", "html", "pdf")


def as_json(report: dict[str, Any]) -> bytes:
    return (json.dumps(report, indent=2, ensure_ascii=False, sort_keys=True) + "\n").encode("utf-8")


def _rows(report: dict[str, Any]) -> list[list[str]]:
    rows = []
    for group in report["groups"]:
        for f in group["figures"]:
            if not f["applicable"]:  # the rule does not apply to this group: no row (JSON keeps it)
                continue
            rows.append([group["service_type"], group["channel"], group["policy_profile"], f["rule"],
                         str(f["applicable"]), str(f["broken"]), str(f["pending"]),
                         "" if f["rate"] is None else f"{f['rate']:.4f}",
                         " ".join(f"{b['protocol_number'] or b.get('request_id')}@p{b['partition']}/o{b['offset']}"
                                  for b in f["broken_by"])])
    return rows


HEADER = ["service_type", "channel", "policy_profile", "rule", "applicable", "broken", "pending",
          "rate", "broken_by"]


def as_csv(report: dict[str, Any]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(HEADER)
    writer.writerows(_rows(report))
    return out.getvalue().encode("utf-8")


def _chart(report: dict[str, Any]) -> Figure:
    """Rate per rule and service type (grouped bars), worst first."""
    labels = [r["rule"] for r in report["rules"]]
    by_service: dict[str, dict[str, list[int]]] = {}
    for group in report["groups"]:
        kept = by_service.setdefault(group["service_type"], {r: [0, 0] for r in labels})
        for f in group["figures"]:
            judged = f["applicable"] - f["pending"]
            kept[f["rule"]][0] += judged - f["broken"]
            kept[f["rule"]][1] += judged
    figure = plt.figure(figsize=(8, 4))
    axes = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(by_service))
    for i, (service, counts) in enumerate(sorted(by_service.items())):
        rates = [100 * k / n if n else 0 for k, n in (counts[r] for r in labels)]
        bars = axes.bar([x + i * width for x in range(len(labels))], rates, width, label=service)
        axes.bar_label(bars, labels=[f"{r:.0f}%" if n else "n/a" for r, (_, n) in
                                     zip(rates, (counts[x] for x in labels), strict=True)], fontsize="x-small")
    axes.set_xticks([x + 0.4 - width / 2 for x in range(len(labels))])
    axes.set_xticklabels(["told at start", "recording notice", "confirmed in time", "deletions", "requests", "demands answered"])
    axes.set_ylabel("% kept / cumprido")
    axes.set_ylim(0, 110)
    axes.set_title("Rules kept per service type / Regras cumpridas por tipo de serviço")
    axes.legend(fontsize="small")
    figure.tight_layout()
    return figure


def _daily_chart(report: dict[str, Any]) -> Figure:
    """Daily rate per contact rule (by the contact's opening day, UTC)."""
    days = sorted(report.get("daily", {}))
    figure = plt.figure(figsize=(8, 3.5))
    axes = figure.add_subplot(1, 1, 1)
    for rule in [r["rule"] for r in report["rules"]][:4]:
        points = [(i, 100 * d[rule]["kept"] / d[rule]["judged"]) for i, day in enumerate(days)
                  if (d := report["daily"][day]).get(rule) and d[rule]["judged"]]
        if points:
            axes.plot([x for x, _ in points], [y for _, y in points], marker="o", label=rule)
    axes.set_xticks(range(len(days)))
    axes.set_xticklabels(days, rotation=30, ha="right", fontsize="x-small")
    axes.set_ylim(0, 105)
    axes.set_ylabel("% kept / cumprido")
    axes.set_title("Daily rate per rule / Taxa diária por regra")
    axes.legend(fontsize="x-small")
    figure.tight_layout()
    return figure


def _sla_chart(report: dict[str, Any]) -> Figure:
    """How much of their deadline answered retrieval requests used (1 = the deadline)."""
    shares = [r["share_of_deadline"] for r in report.get("request_sla", [])]
    figure = plt.figure(figsize=(8, 3))
    axes = figure.add_subplot(1, 1, 1)
    if shares:
        axes.hist(shares, bins=20, range=(0, max(2.0, max(shares))), color="#4477aa")
    axes.axvline(1.0, color="#cc3311", linestyle="--", label="deadline / prazo")
    axes.set_xlabel("share of the deadline used / fração do prazo usada")
    axes.set_ylabel("requests / pedidos")
    axes.set_title(f"Retrieval requests answered: SLA distribution ({len(shares)})")
    axes.legend(fontsize="x-small")
    figure.tight_layout()
    return figure


def _svg(figure: Figure) -> str:
    out = io.StringIO()
    figure.savefig(out, format="svg")
    plt.close(figure)
    text = out.getvalue()
    return text[text.index("<svg"):]


def as_html(report: dict[str, Any], proof_url: str = "/v1/contacts/{protocol}/proof?purpose=compliance-report") -> bytes:
    def protocols(f: dict[str, Any]) -> str:
        return ", ".join(
            (f'<a href="{html.escape(proof_url.format(protocol=b["protocol_number"]))}">'
             f'{html.escape(b["protocol_number"])}</a> ' if b["protocol_number"] else "")
            + f"({_where(b)})" for b in f["broken_by"])

    names = {r["rule"]: f'{html.escape(r["pt"])} / {html.escape(r["en"])}' for r in report["rules"]}
    rows = []
    for group in report["groups"]:
        for f in group["figures"]:
            if not f["applicable"]:
                continue
            rate = "–" if f["rate"] is None else f"{100 * f['rate']:.1f} %"
            rows.append(f"<tr><td>{html.escape(group['service_type'])}</td><td>{html.escape(group['channel'])}</td>"
                        f"<td>{html.escape(group['policy_profile'])}</td><td>{names[f['rule']]}</td>"
                        f"<td>{f['applicable']}</td><td>{f['broken']}</td><td>{f['pending']}</td>"
                        f"<td>{rate}</td><td>{protocols(f)}</td></tr>")
    period = report["period"]
    page = f"""<!doctype html>
<html lang="pt-BR"><head><meta charset="utf-8">
<title>Relatório de conformidade / Compliance report</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #999;padding:.3em .5em;text-align:left}}</style></head><body>
<h1>Relatório de conformidade / Compliance report</h1>
<p>Período / period: {html.escape(period['from'])} – {html.escape(period['to'])}.
Calculado a partir dos eventos verificados da exportação / computed from the verified events of
export <code>{html.escape(report['export_id'])}</code> (manifest SHA-256
<code>{html.escape(report['export_manifest_sha256'])}</code>).</p>
<figure>{_svg(_chart(report))}</figure>
<figure>{_svg(_daily_chart(report))}</figure>
<figure>{_svg(_sla_chart(report))}</figure>
<table><thead><tr><th>Serviço / service</th><th>Canal / channel</th><th>Perfil / profile</th>
<th>Regra / rule</th><th>Aplicável / applicable</th><th>Descumprida / broken</th><th>Pendente / pending</th>
<th>Taxa / rate</th><th>Protocolos (evidência) / protocols (evidence)</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table></body></html>
"""
    return page.encode("utf-8")


def _where(broken: dict[str, Any]) -> str:
    place = "" if broken.get("partition") is None else f"p{broken['partition']}/o{broken['offset']}"
    if broken.get("request_id"):
        place = f"request {html.escape(str(broken['request_id']))} {html.escape(str(broken.get('answer') or 'open'))} {place}"
    return place.strip()


def as_pdf(report: dict[str, Any]) -> bytes:
    out = io.BytesIO()
    with PdfPages(out, metadata={"Title": "Compliance report", "Creator": "protocolo"}) as pdf:
        page = plt.figure(figsize=(8.27, 11.69))
        period = report["period"]
        lines = ["Relatório de conformidade / Compliance report",
                 f"{period['from']} - {period['to']}", f"export {report['export_id']}", ""]
        for row in _rows(report):
            lines.append(f"{row[0]} {row[1]} {row[2]}  {row[3]}: {row[5]} of {row[4]} broken"
                         f" ({row[6]} pending), rate {row[7] or '-'}")
            if row[8]:
                lines.append(f"    {row[8][:110]}")
        page.text(0.05, 0.97, "\n".join(lines[:70]), va="top", family="monospace", fontsize=7)
        pdf.savefig(page)
        plt.close(page)
        for chart in (_chart(report), _daily_chart(report), _sla_chart(report)):
            pdf.savefig(chart)
            plt.close(chart)
    return out.getvalue()


def render(report: dict[str, Any], fmt: str) -> bytes:
    return {"json": as_json, "csv": as_csv, "html": as_html, "pdf": as_pdf}[fmt](report)
