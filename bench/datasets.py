"""The benchmark datasets, generated once with pydicom into a cache and reused.

CT-500 and SMALL-2000 follow shared/reference/performance.md §1 (``gen_dataset.py``): 500 axial
512x512 16-bit CT slices of one series, and 2,000 small 64x64 instances over 200 patients/studies
with CT, MR, CR, DX and US mixed. Quick mode makes the same kinds of data, fewer of them. Every
instance has its own UIDs and pixels, so a content-addressed store keeps each one (PS3.5 §9 UIDs
under a test root). A dataset appears in the cache complete or not at all: it is written to a
temporary folder whose manifest is written last, then renamed into place.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    ComputedRadiographyImageStorage,
    CTImageStorage,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    MRImageStorage,
    UltrasoundImageStorage,
    generate_uid,
)

ORG_ROOT = "1.2.826.0.1.3680043.10.1234.9."  # a test root; never a real deployment's
#: Bump when the generated files change, so stale caches are regenerated.
GENERATOR_VERSION = 1

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage, "CR": ComputedRadiographyImageStorage,
               "DX": DigitalXRayImageStorageForPresentation, "US": UltrasoundImageStorage}
SMALL_MODALITIES = ("CT", "MR", "CR", "DX", "US")


@dataclass(frozen=True)
class DatasetSpec:
    """What to generate: ``kind`` "ct" (one series of axial slices) or "small" (mixed modalities)."""

    name: str
    kind: str
    instances: int
    studies: int
    size: int

    def __post_init__(self) -> None:
        if self.kind not in ("ct", "small"):
            raise ValueError(f"unknown dataset kind {self.kind!r}: 'ct' or 'small'")
        if not 1 <= self.studies <= self.instances:
            raise ValueError(f"{self.name}: need 1 <= studies <= instances, got {self.studies}, {self.instances}")
        if self.size < 8:
            raise ValueError(f"{self.name}: images of {self.size}x{self.size} are too small")

    @property
    def key(self) -> str:
        return f"{self.name.lower()}-v{GENERATOR_VERSION}"


CT_500 = DatasetSpec("CT-500", "ct", 500, 1, 512)
SMALL_2000 = DatasetSpec("SMALL-2000", "small", 2000, 200, 64)
#: ING-NAGLE: a server that delays its ACKs holds a Nagle-enabled sender to ~20 instances/s, so 2,000 would take
#: Orthanc about 90 s a run; 200 show the same rate.
SMALL_200 = DatasetSpec("SMALL-200", "small", 200, 20, 64)
CT_QUICK = DatasetSpec("CT-20", "ct", 20, 1, 512)
SMALL_QUICK = DatasetSpec("SMALL-40", "small", 40, 4, 64)


@dataclass(frozen=True)
class DatasetFiles:
    spec: DatasetSpec
    files: tuple[Path, ...]
    total_bytes: int

    @property
    def megabytes(self) -> float:
        return self.total_bytes / 1e6

    def parts(self, count: int) -> list[list[Path]]:
        """The files dealt round-robin into ``count`` non-empty parts, one per association."""
        if not 1 <= count <= len(self.files):
            raise ValueError(f"cannot split {len(self.files)} files into {count} parts")
        return [list(self.files[i::count]) for i in range(count)]


def ensure_dataset(spec: DatasetSpec, cache_dir: Path) -> DatasetFiles:
    """The cached files of ``spec``, generated first when missing or stale."""
    folder = cache_dir / spec.key
    cached = _load(folder, spec)
    if cached is not None:
        return cached
    shutil.rmtree(folder, ignore_errors=True)
    temporary = cache_dir / f".{spec.key}.incoming-{os.getpid()}"
    shutil.rmtree(temporary, ignore_errors=True)
    temporary.mkdir(parents=True)
    try:
        names = _generate(spec, temporary)
        manifest = {"version": GENERATOR_VERSION, "spec": spec.__dict__, "files": names}
        (temporary / "manifest.json").write_text(json.dumps(manifest))
        temporary.rename(folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    loaded = _load(folder, spec)
    if loaded is None:
        raise RuntimeError(f"the dataset just generated under {folder} does not load")
    return loaded


def _load(folder: Path, spec: DatasetSpec) -> DatasetFiles | None:
    try:
        manifest = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return None
    if manifest.get("version") != GENERATOR_VERSION or manifest.get("spec") != spec.__dict__:
        return None
    files = tuple(folder / name for name in manifest["files"])
    try:
        total = sum(path.stat().st_size for path in files)
    except OSError:
        return None
    return DatasetFiles(spec, files, total) if len(files) == spec.instances else None


def _generate(spec: DatasetSpec, folder: Path) -> list[str]:
    rng = np.random.default_rng(20261120)
    names = []
    if spec.kind == "ct":
        study = _Study.new(0, "CT")
        series_uid = generate_uid(ORG_ROOT)
        phantom = _phantom(spec.size)
        for i in range(1, spec.instances + 1):
            noise = rng.normal(0, 25, size=phantom.shape)
            pixels = np.clip(phantom + noise, -1024, 3071).astype(np.int16) + np.int16(1024)
            ds = _image(study, series_uid, 1, i, "CT", pixels.astype("<i2").tobytes(), spec.size, bits=16, signed=True)
            _ct_acquisition(ds, i, spec.size)
            names.append(_save(ds, folder, f"ct_{i:05d}.dcm"))
        return names
    per_study = [spec.instances // spec.studies + (1 if s < spec.instances % spec.studies else 0)
                 for s in range(spec.studies)]
    number = 0
    for s, count in enumerate(per_study):
        modality = SMALL_MODALITIES[s % len(SMALL_MODALITIES)]
        study = _Study.new(s, modality)
        series_uids = [generate_uid(ORG_ROOT) for _ in range(2 if count > 1 else 1)]
        for i in range(1, count + 1):
            series = (i - 1) % len(series_uids)
            bits = 8 if modality == "US" else 16  # ultrasound is usually 8-bit greyscale
            pixels = rng.integers(0, 255 if bits == 8 else 4095, size=(spec.size, spec.size))
            data = pixels.astype("u1" if bits == 8 else "<u2").tobytes()
            ds = _image(study, series_uids[series], series + 1, i, modality, data, spec.size, bits=bits, signed=False)
            number += 1
            names.append(_save(ds, folder, f"small_{number:05d}.dcm"))
    return names


@dataclass(frozen=True)
class _Study:
    study_instance_uid: str
    patient_id: str
    patient_name: str
    accession_number: str
    body_part: str
    description: str

    @classmethod
    def new(cls, n: int, modality: str) -> _Study:
        body_parts = {"CT": "CHEST", "MR": "BRAIN", "CR": "CHEST", "DX": "HAND", "US": "ABDOMEN"}
        descriptions = {"CT": "CT CHEST W/O CONTRAST", "MR": "MR BRAIN W/O CONTRAST", "CR": "XR CHEST PA",
                        "DX": "XR HAND 3 VIEWS", "US": "US ABDOMEN COMPLETE"}
        return cls(generate_uid(ORG_ROOT), f"BENCH{n:06d}", f"Bench^Patient{n:06d}", f"BA{n:08d}",
                   body_parts[modality], descriptions[modality])


def _image(study: _Study, series_uid: str, series_number: int, instance_number: int, modality: str, pixels: bytes,
           size: int, *, bits: int, signed: bool) -> Dataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = SOP_CLASSES[modality]
    meta.MediaStorageSOPInstanceUID = generate_uid(ORG_ROOT)
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"] if modality in ("CT", "MR") else ["ORIGINAL", "PRIMARY"]
    ds.InstanceCreationDate, ds.InstanceCreationTime = "20261120", "101512"
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.StudyDate = ds.SeriesDate = ds.AcquisitionDate = ds.ContentDate = "20261120"
    ds.StudyTime, ds.SeriesTime = "101500", "101505"
    ds.AcquisitionTime = ds.ContentTime = f"1015{instance_number % 60:02d}"
    ds.AccessionNumber = study.accession_number
    ds.Modality = modality
    ds.Manufacturer = "Telerad Bench"
    ds.InstitutionName = "Bench General Hospital"
    ds.ReferringPhysicianName = "Referrer^Rita"
    ds.StationName = f"{modality}01"
    ds.StudyDescription = study.description
    ds.SeriesDescription = f"{study.description} series {series_number}"
    ds.ManufacturerModelName = "Synthetic"
    ds.PatientName = study.patient_name
    ds.PatientID = study.patient_id
    ds.PatientBirthDate = "19700101"
    ds.PatientSex = "F"
    ds.PatientAge = "056Y"
    ds.BodyPartExamined = study.body_part
    ds.StudyInstanceUID = study.study_instance_uid
    ds.SeriesInstanceUID = series_uid
    ds.StudyID = "1"
    ds.SeriesNumber = series_number
    ds.InstanceNumber = instance_number
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows = ds.Columns = size
    ds.BitsAllocated = bits
    ds.BitsStored = bits if signed or bits == 8 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 1 if signed else 0
    ds.PixelData = pixels
    return ds


def _ct_acquisition(ds: Dataset, instance_number: int, size: int) -> None:
    """The CT Image and Image Plane module attributes a scanner writes (PS3.3 C.8.2.1, C.7.6.2)."""
    spacing = 350.0 / size
    ds.ScanOptions = "HELICAL MODE"
    ds.SliceThickness = "1.25"
    ds.KVP = "120"
    ds.DataCollectionDiameter = "500"
    ds.ReconstructionDiameter = "350"
    ds.GantryDetectorTilt = "0"
    ds.TableHeight = "160"
    ds.RotationDirection = "CW"
    ds.ExposureTime = "600"
    ds.XRayTubeCurrent = "250"
    ds.FilterType = "BODY FILTER"
    ds.ConvolutionKernel = "STANDARD"
    ds.PatientPosition = "HFS"
    ds.AcquisitionNumber = 1
    ds.ImagePositionPatient = [-175.0, -175.0, round(-instance_number * 1.25, 2)]
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.FrameOfReferenceUID = ds.StudyInstanceUID[:60] + ".1"
    ds.PositionReferenceIndicator = ""
    ds.SliceLocation = round(-instance_number * 1.25, 2)
    ds.PixelSpacing = [round(spacing, 6), round(spacing, 6)]
    ds.RescaleIntercept = "-1024"
    ds.RescaleSlope = "1"
    ds.RescaleType = "HU"
    ds.WindowCenter = "40"
    ds.WindowWidth = "400"


def _phantom(size: int) -> np.ndarray:
    """Hounsfield units of a body ellipse with two lungs and a spine, on air."""
    y, x = np.mgrid[-1:1:size * 1j, -1:1:size * 1j]
    hu = np.full((size, size), -1000.0)
    hu[(x / 0.85) ** 2 + (y / 0.65) ** 2 <= 1] = 40.0
    for cx in (-0.38, 0.38):
        hu[((x - cx) / 0.28) ** 2 + (y / 0.42) ** 2 <= 1] = -820.0
    hu[x ** 2 + ((y - 0.45) / 0.9) ** 2 <= 0.1 ** 2] = 700.0
    return hu


def _save(ds: Dataset, folder: Path, name: str) -> str:
    ds.save_as(folder / name, enforce_file_format=True)
    return name
