"""Synthetic DICOM studies for tests and benchmarks, written with pydicom."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

ORG_ROOT = "1.2.826.0.1.3680043.10.1234."  # a test root; real deployments use their own


@dataclass(frozen=True)
class StudyFiles:
    study_instance_uid: str
    accession_number: str
    patient_id: str
    series_instance_uids: list[str]
    files: list[Path]


def write_ct_study(folder: Path, *, series: int = 2, instances_per_series: int = 3, size: int = 64,
                   accession_number: str = "ACC0001", patient_id: str = "PAT0001",
                   patient_name: str = "Doe^Jane", priority: str = "") -> StudyFiles:
    folder.mkdir(parents=True, exist_ok=True)
    study_uid = generate_uid(ORG_ROOT)
    series_uids = [generate_uid(ORG_ROOT) for _ in range(series)]
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 4095, size=(size, size), dtype=np.uint16).tobytes()
    files = []
    for s, series_uid in enumerate(series_uids, start=1):
        for i in range(1, instances_per_series + 1):
            ds = ct_instance(study_uid, series_uid, s, i, pixels, size, accession_number, patient_id, patient_name)
            if priority:
                ds.RequestedProcedurePriority = priority
            path = folder / f"s{s:03d}_i{i:04d}.dcm"
            ds.save_as(path, enforce_file_format=True)
            files.append(path)
    return StudyFiles(study_uid, accession_number, patient_id, series_uids, files)


def ct_instance(study_uid: str, series_uid: str, series_number: int, instance_number: int, pixels: bytes,
                size: int, accession_number: str, patient_id: str, patient_name: str) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = CTImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid(ORG_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = "20261120"
    ds.StudyTime = "101500"
    ds.AccessionNumber = accession_number
    ds.Modality = "CT"
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = "CT CHEST W/O CONTRAST"
    ds.SeriesDescription = f"Series {series_number}"
    ds.PatientName = patient_name
    ds.PatientID = patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.BodyPartExamined = "CHEST"
    ds.StudyInstanceUID = study_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.ImagePositionPatient = [0, 0, instance_number * 1.25]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = study_uid + ".1" if len(study_uid) < 62 else study_uid
    ds.SliceThickness = 1.25
    ds.PixelSpacing = [0.7, 0.7]
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = size
    ds.Columns = size
    ds.BitsAllocated = 16
    ds.BitsStored = 12
    ds.HighBit = 11
    ds.PixelRepresentation = 0
    ds.RescaleIntercept = -1024
    ds.RescaleSlope = 1
    ds.WindowCenter = 40
    ds.WindowWidth = 400
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.PixelData = pixels
    return ds


async def storescu(port: int, *paths: Path, ae_title: str = "TELERAD", calling_ae_title: str = "STORESCU") -> None:
    """Send files with dcmtk's storescu, as a modality would; required in CI, skipped elsewhere if missing."""
    import asyncio
    import os
    import shutil

    import pytest

    if shutil.which("storescu") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("CI=true needs dcmtk's storescu (make tools)")
        pytest.skip("dcmtk's storescu is not installed")
    process = await asyncio.create_subprocess_exec(
        "storescu", "-aet", calling_ae_title, "-aec", ae_title, "127.0.0.1", str(port), *map(str, paths),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, env={**os.environ, "TCP_NODELAY": "1"})
    output, _ = await process.communicate()
    assert process.returncode == 0, output.decode()
