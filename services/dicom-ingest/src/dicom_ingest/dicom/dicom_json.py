"""The DICOM JSON Model (PS3.18 Annex F) for WADO-RS metadata and STOW-RS responses.

Metadata is every attribute of the stored data set except File Meta Information, group lengths and
trailing padding; top-level binary values of more than :data:`BULK_DATA_THRESHOLD` bytes, and the
pixel data always, are replaced by a BulkDataURI (PS3.18 §F.2.6) under the instance's
``/bulkdata/{tag}``. Available Transfer Syntax UID (0008,3002) says how the instance is stored.
"""

from __future__ import annotations

import io
from typing import Any

from pydicom import dcmread
from pydicom.dataset import Dataset

from dicom_ingest.dicom.frames import BULK_DATA_VRS, PIXEL_DATA_TAGS

BULK_DATA_THRESHOLD = 1024
DATA_SET_TRAILING_PADDING = 0xFFFCFFFC
AVAILABLE_TRANSFER_SYNTAX_UID = "00083002"


def element(vr: str, *values: Any) -> dict[str, Any]:
    """One attribute in the DICOM JSON Model; no values means an empty attribute (PS3.18 §F.2.2)."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def sequence(items: list[dict[str, Any]]) -> dict[str, Any]:
    return element("SQ", *items)


def instance_metadata(data: bytes, bulk_data_url: str) -> dict[str, Any]:
    """The metadata of the PS3.10 file ``data``; ``bulk_data_url`` is the instance's bulk data base URL."""
    dataset = dcmread(io.BytesIO(data))
    kept = Dataset()
    bulk: dict[str, dict[str, Any]] = {}
    for tag in list(dataset.keys()):
        if tag.element == 0 or tag == DATA_SET_TRAILING_PADDING:
            continue
        item = dataset[tag]
        if tag in PIXEL_DATA_TAGS or (item.VR in BULK_DATA_VRS and item.value is not None
                                      and len(item.value) > BULK_DATA_THRESHOLD):
            bulk[f"{tag:08X}"] = {"vr": _vr_of(item, dataset), "BulkDataURI": f"{bulk_data_url}/{tag:08X}"}
        else:
            kept.add(item)
    document = kept.to_json_dict(bulk_data_threshold=2**31, suppress_invalid_tags=True)
    document.update(bulk)
    document[AVAILABLE_TRANSFER_SYNTAX_UID] = element("UI", str(dataset.file_meta.TransferSyntaxUID))
    return dict(sorted(document.items()))


def _vr_of(item: Any, dataset: Dataset) -> str:
    vr = str(item.VR)
    if " or " not in vr:
        return vr
    if int(item.tag) in PIXEL_DATA_TAGS:  # PS3.5 §8.2: OB when encapsulated or 8 bits, else OW
        encapsulated = dataset.file_meta.TransferSyntaxUID.is_compressed
        return "OB" if encapsulated or int(dataset.get("BitsAllocated", 8)) <= 8 else "OW"
    return "OW" if "OW" in vr else vr.split(" or ")[0]
