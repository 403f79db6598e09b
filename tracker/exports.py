"""Human-readable (PDF) and electronic (CSV) copies of records, 21 CFR 11.10(b).

Rendering only: callers pass plain rows and dicts; nothing here reads the database. PDFs use
reportlab's built-in Helvetica and Courier, which cover Latin-1 only, so text is mapped to
that set first (arrows become '->').
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.pagesizes import landscape
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import KeepTogether
from reportlab.platypus import LongTable
from reportlab.platypus import Paragraph
from reportlab.platypus import SimpleDocTemplate
from reportlab.platypus import Spacer
from reportlab.platypus import TableStyle
from reportlab.platypus.flowables import Flowable

from tracker.domain.signatures import SIGNATURE_MEANINGS

CSV_COLUMNS = [
    "id",
    "at_utc",
    "username",
    "actor",
    "action",
    "entity_type",
    "entity_id",
    "site",
    "changes",
    "reason",
]
_LATIN1 = {"→": "->", "←": "<-", "✔": "ok", "✘": "x", "≥": ">=", "≤": "<=", "…": "..."}


def _utc(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M:%S UTC") if value else ""


def _text(value: object) -> str:
    text = "" if value is None else str(value)
    for char, plain in _LATIN1.items():
        text = text.replace(char, plain)
    return text.encode("latin-1", "replace").decode("latin-1")


def _para(value: object, style: ParagraphStyle) -> Paragraph:
    escaped = _text(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return Paragraph(escaped, style)


def _changes(changes: dict[str, Any]) -> str:
    parts = []
    for key, value in changes.items():
        if isinstance(value, list) and len(value) == 2:
            parts.append(f"{key}: {json.dumps(value[0])} -> {json.dumps(value[1])}")
        else:
            parts.append(f"{key}: {json.dumps(value)}")
    return "; ".join(parts)


def audit_csv(rows: Sequence[dict[str, Any]]) -> bytes:
    """The entries as CSV (UTF-8 with a byte-order mark, so spreadsheets read it right)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(CSV_COLUMNS)
    for r in rows:
        writer.writerow(
            [
                r["id"],
                r["at"].isoformat(),
                r["username"] or "",
                r["actor"] or "",
                r["action"],
                r["entity_type"],
                r["entity_id"],
                r["site"] or "",
                json.dumps(r["changes"], sort_keys=True, ensure_ascii=False),
                r["reason"] or "",
            ]
        )
    return buffer.getvalue().encode("utf-8-sig")


class _PageNumbers:
    """Footer on every page: what the document is, when it was made, page n of m."""

    def __init__(self, title: str, generated: str) -> None:
        self.title = title
        self.generated = generated

    def __call__(self, canvas: Any, doc: Any) -> None:
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        width = doc.pagesize[0]
        canvas.drawString(doc.leftMargin, 8 * mm, _text(f"{self.title} - {self.generated}"))
        canvas.drawRightString(width - doc.rightMargin, 8 * mm, f"page {doc.page}")
        canvas.restoreState()


def _styles() -> dict[str, ParagraphStyle]:
    base = getSampleStyleSheet()
    return {
        "title": base["Title"],
        "h2": base["Heading2"],
        "body": base["BodyText"],
        "small": ParagraphStyle("small", parent=base["BodyText"], fontSize=8, leading=10),
        "mono": ParagraphStyle(
            "mono", parent=base["BodyText"], fontName="Courier", fontSize=7.5, leading=9.5
        ),
        "cell": ParagraphStyle("cell", parent=base["BodyText"], fontSize=7.5, leading=9.5),
    }


_GRID = TableStyle(
    [
        ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 8),
        ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#e5e7eb")),
        ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9ca3af")),
        ("VALIGN", (0, 0), (-1, -1), "TOP"),
        ("LEFTPADDING", (0, 0), (-1, -1), 3),
        ("RIGHTPADDING", (0, 0), (-1, -1), 3),
    ]
)


def audit_pdf(
    rows: Sequence[dict[str, Any]],
    *,
    filters: str,
    generated_at: datetime,
    generated_by: str,
) -> bytes:
    """The entries as a landscape A4 report: who, what (old -> new), when, where and why."""
    st = _styles()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=15 * mm,
        title="Audit trail",
        author=_text(generated_by),
    )
    story: list[Flowable] = [
        Paragraph("Audit trail", st["title"]),
        _para(
            f"Filter: {filters}. {len(rows)} entries, newest first. Generated "
            f"{_utc(generated_at)} by {generated_by}. Times are UTC.",
            st["body"],
        ),
        Spacer(1, 4 * mm),
    ]
    data: list[list[Any]] = [["When (UTC)", "Who", "Action", "Record", "Site", "Changes", "Why"]]
    for r in rows:
        data.append(
            [
                _para(_utc(r["at"]), st["cell"]),
                _para(f"{r['actor'] or 'system'} ({r['username'] or '-'})", st["cell"]),
                _para(r["action"], st["cell"]),
                _para(f"{r['entity_type']} {r['entity_id']}", st["mono"]),
                _para(r["site"] or "", st["cell"]),
                _para(_changes(r["changes"]), st["mono"]),
                _para(r["reason"] or "", st["cell"]),
            ]
        )
    widths = [30 * mm, 38 * mm, 28 * mm, 42 * mm, 16 * mm, 76 * mm, 42 * mm]
    table = LongTable(data, colWidths=widths, repeatRows=1)
    table.setStyle(_GRID)
    story.append(table if rows else _para("No entries match.", st["body"]))
    footer = _PageNumbers("Audit trail", f"generated {_utc(generated_at)}")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def _fact_table(facts: list[list[str]], st: dict[str, ParagraphStyle]) -> LongTable:
    """Label / value rows, labels shaded."""
    table = LongTable(
        [[_para(k, st["cell"]), _para(v, st["cell"])] for k, v in facts],
        colWidths=[45 * mm, 137 * mm],
    )
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#9ca3af")),
                ("BACKGROUND", (0, 0), (0, -1), colors.HexColor("#f3f4f6")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
            ]
        )
    )
    return table


def certificate_pdf(bundle: dict[str, Any], *, verdict: dict[str, Any]) -> bytes:
    """The chain-of-identity certificate a person reads; the JSON bundle is what they verify."""
    st = _styles()
    m = bundle["manifest"]
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=14 * mm,
        rightMargin=14 * mm,
        topMargin=14 * mm,
        bottomMargin=16 * mm,
        title=f"Chain-of-identity certificate {m['coi']}",
        author=_text(m["generated_by"]),
    )
    state = (
        "VERIFIED: every hash recomputed, every link intact"
        if verdict["intact"]
        else "BROKEN: " + "; ".join(f"#{b['seq']} {b['problem']}" for b in verdict["breaks"])
    )
    facts = [
        ["Chain of identity (DS040)", m["coi"]],
        ["Order", m["order"]],
        ["Patient (pseudonym)", m["patient"]],
        ["Product", f"{m['product']['name']} ({m['product']['code']} v{m['product']['version']})"],
        ["Sites", " -> ".join(m["sites"].values())],
        ["Custody events", str(m["event_count"])],
        ["Chain status", state],
        ["Generated", f"{m['generated_at']} by {m['generated_by']}"],
    ]
    fact_table = _fact_table(facts, st)
    story: list[Flowable] = [
        Paragraph("Chain-of-identity certificate", st["title"]),
        fact_table,
        Spacer(1, 3 * mm),
        Paragraph("Head of the hash chain", st["h2"]),
        _para(m["head_hash"], st["mono"]),
        _para(
            "Compare this value with the bundle (manifest.head_hash) and with the journey page "
            "of the tracker, which recomputes it. Anyone who alters, removes or reorders an "
            "event changes it.",
            st["small"],
        ),
        Paragraph("Custody events", st["h2"]),
    ]
    data: list[list[Any]] = [["#", "Occurred (UTC)", "Event", "Where / who", "Hash"]]
    for e in bundle["events"]:
        refs = e.get("refs", {})
        f = e["fields"]
        what = f["event_type"]
        if what == "registered":
            what += f": {refs.get('subject') or ''}"
        elif f.get("to_state"):
            what += f": {refs.get('subject') or ''} {f.get('from_state') or ''} -> {f['to_state']}"
        elif refs.get("subject"):
            what += f": {refs['subject']}"
        if f.get("reason"):
            what += f" (reason: {f['reason']})"
        data.append(
            [
                str(e["seq"]),
                _para(f["occurred_at"][:19].replace("T", " "), st["cell"]),
                _para(what, st["cell"]),
                _para(f"{refs.get('site') or ''} / {refs.get('actor') or ''}", st["cell"]),
                _para(e["hash"][:24] + "...", st["mono"]),
            ]
        )
    events = LongTable(data, colWidths=[9 * mm, 32 * mm, 68 * mm, 40 * mm, 33 * mm], repeatRows=1)
    events.setStyle(_GRID)
    story.append(events)
    story.append(Paragraph("Electronic signatures", st["h2"]))
    if bundle["signatures"]:
        for s in bundle["signatures"]:
            meaning = SIGNATURE_MEANINGS.get(s["meaning"], s["meaning"])
            story.append(
                KeepTogether(
                    [
                        _para(
                            f"{s['printed_name']} - {s['meaning']} - {s['signed_at']}",
                            st["body"],
                        ),
                        _para(
                            f'"{meaning}" Record: {s["record_type"]} {s["record_id"]}; '
                            f"record hash {s['record_hash']}",
                            st["small"],
                        ),
                    ]
                )
            )
    else:
        story.append(_para("No signature is linked to this order's records.", st["body"]))
    story += [
        Paragraph("Verify offline", st["h2"]),
        _para(
            "Download the JSON bundle from the journey page (or GET "
            f"/api/v1/orders/{m['order']}/certificate) and run, with Python 3.11+ and nothing "
            "else installed:",
            st["body"],
        ),
        _para(
            f"python -m tracker.verify_certificate bundle.json --head {m['head_hash']}",
            st["mono"],
        ),
        _para(
            "(or, without the tracker installed, the single file tracker/verify_certificate.py: "
            "python verify_certificate.py bundle.json --head ...)",
            st["small"],
        ),
        _para(
            "The verifier recomputes each event's SHA-256 from the previous hash and the "
            "event's canonical JSON (sorted keys, no spaces, UTC times with Z), checks the "
            "sequence and every link, the manifest's digests of the event and signature "
            "sections, and every signature whose signed content is in the bundle. It exits 0 "
            "when everything holds and 1 otherwise.",
            st["small"],
        ),
    ]
    footer = _PageNumbers(
        f"Chain-of-identity certificate {m['coi']}", f"head {m['head_hash'][:16]}..."
    )
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


class _Barcode(Flowable):  # type: ignore[misc]
    """A Code 128 symbol drawn as vector bars (whole bars, no scaling artefacts), with its
    text underneath; the data must be an identifier only, never patient identity."""

    def __init__(self, data: str, *, module: float = 0.9, bar_height: float = 14 * mm) -> None:
        from labels.symbols import code128

        super().__init__()
        self.symbol = code128(data)
        self.module, self.bar_height = module, bar_height
        self.quiet = self.symbol.quiet_zone * module
        self.width = self.symbol.width * module + 2 * self.quiet
        self.height = bar_height + 10

    def wrap(self, aw: float, ah: float) -> tuple[float, float]:
        return self.width, self.height

    def draw(self) -> None:
        from labels.symbols import dark_runs

        c = self.canv
        for _row, start, run in dark_runs(self.symbol):
            c.rect(self.quiet + start * self.module, 10, run * self.module, self.bar_height, 0, 1)
        c.setFont("Courier", 8)
        c.drawCentredString(self.width / 2, 1, _text(self.symbol.data))


def release_certificate_pdf(cert: dict[str, Any]) -> bytes:
    """The release-for-infusion certificate: the lot's tests and results, the QA release and
    the identifiers scanned at the bedside (the certificate's CRT code and each bag's DIN as
    Code 128). No patient name: the patient appears by pseudonym only."""
    st = _styles()
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=14 * mm,
        rightMargin=14 * mm,
        topMargin=14 * mm,
        bottomMargin=16 * mm,
        title=f"Release for infusion {cert['code']}",
        author=_text(cert["signed_by"]),
    )
    kind = cert["kind"]
    facts = [
        ["Certificate", cert["code"]],
        ["Release", "EXCEPTIONAL RELEASE (out of specification)" if kind == "exceptional"
         else kind],
        ["Lot", f"{cert['lot']} ({cert['process']}, {cert['site']})"],
        ["Chain of identity (DS040)", cert["coi"]],
        ["Patient (pseudonym)", cert["patient"]],
        ["Product", cert["product"]],
        ["Released", f"{_utc(cert['issued_at'])}"],
        ["QA signature", f"{cert['signed_by']} ({cert['meaning']}), {_utc(cert['signed_at'])}"],
        ["Record hash", cert["record_hash"]],
    ]  # fmt: skip
    if cert.get("physician_name"):
        facts.append(
            [
                "Physician acknowledgement",
                f"{cert['physician_name']}, {_utc(cert['physician_acknowledged_at'])}: "
                f"\u201c{cert['physician_statement']}\u201d",
            ]
        )
    fact_table = _fact_table(facts, st)
    story: list[Flowable] = [
        Paragraph("Release for infusion", st["title"]),
        fact_table,
        Spacer(1, 4 * mm),
        Paragraph("Scan at the bedside", st["h2"]),
        _para("Release certificate", st["small"]),
        _Barcode(cert["code"]),
    ]
    for bag in cert["bags"]:
        story += [_para(f"Product bag {bag['din']}", st["small"]), _Barcode(bag["barcode"])]
    story.append(Paragraph("Release tests", st["h2"]))
    rows: list[list[Any]] = [
        ["Test", "Method", "Specification", "Result", "Outcome", "Recorded / reviewed"]
    ]
    for t in cert["tests"]:
        rows.append(
            [
                _para(t["code"], st["cell"]),
                _para(t["method"], st["cell"]),
                _para(t["spec"], st["cell"]),
                _para(f"{t['value']} {t['unit'] or ''}".strip(), st["cell"]),
                _para(t["outcome"].upper(), st["cell"]),
                _para(f"{t['recorded_by']} / {t['reviewed_by'] or '-'}", st["cell"]),
            ]
        )
    table = LongTable(
        rows, colWidths=[24 * mm, 28 * mm, 32 * mm, 30 * mm, 18 * mm, 50 * mm], repeatRows=1
    )
    table.setStyle(_GRID)
    story.append(table)
    footer = _PageNumbers(f"Release for infusion {cert['code']}", _utc(cert["issued_at"]))
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()
