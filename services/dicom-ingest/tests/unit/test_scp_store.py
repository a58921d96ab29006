"""The C-STORE path writes the received data set as the DICOM file pynetdicom would, without pydicom."""

import pytest
from pynetdicom.dsutils import create_file_meta, encode_file_meta

from dicom_ingest.dicom.part10 import read_file_meta
from dicom_ingest.entrypoints.scp import part10_file

CT = "1.2.840.10008.5.1.4.1.1.2"


@pytest.mark.parametrize(("sop_class_uid", "sop_instance_uid", "transfer_syntax_uid"), [
    (CT, "1.2.826.0.1.3680043.10.1234.1", "1.2.840.10008.1.2"),  # odd and even lengths: NUL padding
    ("1.2.840.10008.5.1.4.1.1.4", "1.2.826.0.1.3680043.10.1234.12", "1.2.840.10008.1.2.1"),
    ("1.2.840.10008.5.1.4.1.1.88.11", "2.25.1", "1.2.840.10008.1.2.4.50"),
    (CT, "1." + "2" * 62, "1.2.840.10008.1.2.1.99"),  # 64 characters, deflated
])
def test_the_file_is_byte_for_byte_pynetdicoms(sop_class_uid: str, sop_instance_uid: str,
                                                  transfer_syntax_uid: str) -> None:
    dataset = b"\x08\x00\x16\x00UI\x1a\x00" + sop_class_uid.encode().ljust(26, b"\x00")
    expected = b"\x00" * 128 + b"DICM" + encode_file_meta(create_file_meta(
        sop_class_uid=sop_class_uid, sop_instance_uid=sop_instance_uid, transfer_syntax=transfer_syntax_uid)) + dataset
    written = part10_file(sop_class_uid, sop_instance_uid, transfer_syntax_uid, dataset)
    assert written == expected
    meta = read_file_meta(written)
    assert (meta.media_storage_sop_instance_uid, meta.transfer_syntax_uid) == (sop_instance_uid, transfer_syntax_uid)
    assert written[meta.dataset_offset:] == dataset
