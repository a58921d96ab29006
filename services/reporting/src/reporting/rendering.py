"""A report as it is read, in plain text or HTML.

A signed report carries the manifestation of each signature — the signer's printed name, the date
and time of signing (UTC) and its meaning (21 CFR 11.50) — and whether the stored content still
hashes to the digest that was signed: content changed behind the service's back shows as ALTERED.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from datetime import UTC, datetime

from reporting.domain.report import AddendumStatusValues, ReportStatusValues
from reporting.domain.templates import Template
from reporting.entrypoints.models import IntegrityView, ReportView, SignatureView

STATUS_LINES = {
    ReportStatusValues.DRAFT: "DRAFT - not for clinical use",
    ReportStatusValues.PRELIMINARY: "PRELIMINARY - not yet signed",
    ReportStatusValues.FINAL: "FINAL",
    ReportStatusValues.AMENDED: "FINAL, AMENDED",
}


@dataclass(frozen=True)
class Block:
    """One piece of the report: a heading, a labelled value, a paragraph, or a warning."""

    kind: str  # title | status | field | heading | text | signature | alert | note
    text: str
    label: str = ""


def moment(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def manifestation(signature: SignatureView) -> str:
    return (f"Electronically signed by {signature.signer_name} on {moment(signature.signed_at)}. "
            f"Meaning of signature: {signature.meaning.value}. Signature {signature.signature_id}.")


def integrity_block(integrity: IntegrityView | None) -> Block | None:
    if integrity is None:
        return None
    if integrity.intact:
        return Block("note", f"Integrity verified: the content matches the signed digest (SHA-256 "
                             f"{integrity.signed_digest}).")
    return Block("alert", f"ALTERED since signing: the stored content no longer matches the signed digest "
                          f"(signed {integrity.signed_digest}, stored content now {integrity.current_digest}).")


def _value(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def blocks(report: ReportView, template: Template) -> list[Block]:
    out = [Block("title", f"{template.name} report"), Block("status", STATUS_LINES[report.status])]
    out += [Block("field", value, label) for label, value in (
        ("Patient", report.patient_name), ("Patient ID", report.patient_id),
        ("Accession", report.accession_number), ("Study Instance UID", report.study_instance_uid),
        ("Referring physician", report.referring_physician_name), ("Version", str(report.shown_version)),
    ) if value]
    values = report.content.get("sections", {})
    assert isinstance(values, dict)
    for section in template.sections:
        if section.filled(values.get(section.key)):
            out += [Block("heading", section.title), Block("text", _value(values[section.key]))]
    annotations = report.content.get("annotations") or []
    assert isinstance(annotations, list)
    if annotations:
        out.append(Block("heading", "Annotations"))
        out += [Block("text", f"{a['kind']} {a['label']!r} on image {a['sop_instance_uid']}"
                              + (f", frame {a['frame_number']}" if a.get("frame_number") else ""))
                for a in annotations]
    for finding in report.critical_findings:
        to = finding.referring_physician_name or "the referring physician"
        if finding.referring_physician_contact:
            to += f" ({finding.referring_physician_contact})"
        out.append(Block("note", f"Critical finding ({finding.category.value}), flagged "
                                 f"{moment(finding.flagged_at)}, for {to}: {finding.description}"))
    if report.signature is not None:
        out.append(Block("signature", manifestation(report.signature)))
    if (check := integrity_block(report.integrity)) is not None:
        out.append(check)
    for addendum in report.addenda:
        if addendum.status is not AddendumStatusValues.SIGNED or addendum.signature is None:
            continue
        out += [Block("heading", f"Addendum of {moment(addendum.signature.signed_at)}"), Block("text", addendum.text),
                Block("signature", manifestation(addendum.signature))]
        if (check := integrity_block(addendum.integrity)) is not None:
            out.append(check)
    if pending := sum(1 for a in report.addenda if a.status is AddendumStatusValues.PENDING):
        out.append(Block("note", f"{pending} addendum awaiting signature" if pending == 1
                                 else f"{pending} addenda awaiting signature"))
    return out


def as_text(report: ReportView, template: Template) -> str:
    lines: list[str] = []
    for block in blocks(report, template):
        if block.kind == "title":
            lines += [block.text.upper(), "=" * len(block.text)]
        elif block.kind == "field":
            lines.append(f"{block.label}: {block.text}")
        elif block.kind == "heading":
            lines += ["", block.text.upper()]
        elif block.kind in ("signature", "alert", "note"):
            lines += ["", block.text]
        else:
            lines.append(block.text)
    return "\n".join(lines) + "\n"


def as_html(report: ReportView, template: Template) -> str:
    def e(text: str) -> str:
        return html.escape(text, quote=True)

    body: list[str] = []
    fields: list[str] = []
    for block in blocks(report, template):
        if block.kind == "field":
            fields.append(f"<dt>{e(block.label)}</dt><dd>{e(block.text)}</dd>")
            continue
        if fields:
            body.append(f"<dl>{''.join(fields)}</dl>")
            fields = []
        body.append({
            "title": "<h1>{}</h1>", "status": '<p class="status"><strong>{}</strong></p>', "heading": "<h2>{}</h2>",
            "text": "<p>{}</p>", "signature": '<p class="signature">{}</p>', "alert": '<p class="alert"><strong>{}'
            "</strong></p>", "note": '<p class="note">{}</p>'}[block.kind].format(e(block.text).replace("\n", "<br>")))
    if fields:
        body.append(f"<dl>{''.join(fields)}</dl>")
    return ('<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f"<title>{e(template.name)} report {e(report.accession_number)}</title></head>"
            f"<body><article>{''.join(body)}</article></body></html>\n")
