"""The templates an organisation starts with, until its managers write their own."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from reporting.domain.templates import Section, SectionKindValues, Template

CHOICE = SectionKindValues.CHOICE


def _common(findings: str = "", impression: str = "") -> tuple[Section, ...]:
    return (
        Section("clinical_history", "Clinical history"),
        Section("technique", "Technique"),
        Section("comparison", "Comparison", default="None available."),
        Section("findings", "Findings", default=findings or None, required=True),
        Section("impression", "Impression", default=impression or None, required=True),
    )


def default_templates(organization_id: UUID, now: datetime) -> list[Template]:
    common = _common()
    return [
        Template(organization_id, "General", "", "", common, created_at=now, updated_at=now),
        Template(organization_id, "CT Head", "CT", "HEAD", (
            common[0],
            Section("technique", "Technique", default="Axial CT of the head without intravenous contrast."),
            common[2],
            Section("contrast", "Contrast", CHOICE, ("none", "intravenous"), default="none"),
            Section("findings", "Findings", required=True,
                    default="No intracranial haemorrhage, mass effect or midline shift. "
                            "Ventricles and sulci are normal for age."),
            Section("impression", "Impression", required=True, default="No acute intracranial abnormality."),
        ), created_at=now, updated_at=now),
        Template(organization_id, "Chest X-ray", "CR", "CHEST", (
            common[0],
            Section("technique", "Technique", default="Chest radiograph."),
            Section("projection", "Projection", CHOICE, ("PA", "AP", "PA and lateral"), default="PA"),
            common[2],
            Section("findings", "Findings", required=True,
                    default="The lungs are clear. Heart size is normal. No pleural effusion or pneumothorax."),
            Section("impression", "Impression", required=True, default="No acute cardiopulmonary abnormality."),
        ), created_at=now, updated_at=now),
    ]
