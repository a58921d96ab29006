"""Seed instances for the fuzzers: real data sets written with pydicom, each valid as it is.

They cover what the structural walk has to tell apart: the four uncompressed transfer syntaxes (implicit
and explicit VR Little Endian, Big Endian, deflated), encapsulated pixel data (JPEG Baseline, RLE) with
and without a basic offset table, sequences of defined and undefined length nested several deep, private
elements (one a UN of undefined length, PS3.5 §6.2.2), several SOP classes and character sets.

``python -m tests.fuzz.seeds`` rewrites ``tests/fuzz/corpus/`` from them (deterministic: fixed UIDs).
"""

from __future__ import annotations

import io
import shutil
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydicom.dataelem import DataElement
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset, write_file_meta_info
from pydicom.sequence import Sequence
from pydicom.uid import (
    UID,
    ComprehensiveSRStorage,
    DeflatedExplicitVRLittleEndian,
    EncapsulatedPDFStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    MRImageStorage,
    RLELossless,
    SecondaryCaptureImageStorage,
    UltrasoundMultiFrameImageStorage,
)

from support.studies import ORG_ROOT, write_ct_study

from .inputs import TRANSFER_SYNTAXES, multipart_input

CORPUS = Path(__file__).parent / "corpus"
STUDY_UID, SERIES_UID = ORG_ROOT + "4.1", ORG_ROOT + "4.1.1"
ITEM_DELIMITER = b"\xfe\xff\x0d\xe0\0\0\0\0"


@dataclass(frozen=True)
class Seed:
    name: str
    transfer_syntax: UID
    dataset: Dataset

    def data_set(self) -> bytes:
        """The data set as a C-STORE carries it: no preamble, no File Meta Information."""
        return encode(self.dataset, self.transfer_syntax)

    def read_instance_input(self) -> bytes:
        """The input of ``fuzz_read_instance``: a transfer syntax selector byte, then the data set."""
        return bytes([TRANSFER_SYNTAXES.index(str(self.transfer_syntax))]) + self.data_set()

    def part10(self) -> bytes:
        """The instance as a PS3.10 file, as STOW-RS carries it."""
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = self.dataset.SOPClassUID
        meta.MediaStorageSOPInstanceUID = self.dataset.SOPInstanceUID
        meta.TransferSyntaxUID = self.transfer_syntax
        fp = DicomBytesIO()
        fp.write(b"\0" * 128 + b"DICM")
        write_file_meta_info(fp, meta)
        return bytes(fp.getvalue()) + self.data_set()


def encode(ds: Dataset, transfer_syntax: UID) -> bytes:
    fp = DicomBytesIO()
    fp.is_implicit_VR, fp.is_little_endian = transfer_syntax.is_implicit_VR, transfer_syntax.is_little_endian
    write_dataset(fp, ds)
    if transfer_syntax.is_deflated:
        compressor = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return compressor.compress(fp.getvalue()) + compressor.flush()
    return bytes(fp.getvalue())


def uid(suffix: int) -> str:
    return f"{ORG_ROOT}4.2.{suffix}"


def ct_from_write_ct_study() -> Dataset:
    """One instance of :func:`support.studies.write_ct_study`, its random UIDs made fixed."""
    from pydicom import dcmread

    folder = Path(tempfile.mkdtemp())
    try:
        study = write_ct_study(folder, series=1, instances_per_series=1, size=8, accession_number="ACC4",
                               patient_id="PAT4", patient_name="Doe^Jane", priority="STAT")
        ds = dcmread(study.files[0])
    finally:
        shutil.rmtree(folder)
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID = STUDY_UID, SERIES_UID, uid(1)
    ds.FrameOfReferenceUID = STUDY_UID + ".9"
    del ds.file_meta
    return ds


def patient_and_study(ds: Dataset, sop_class_uid: str, sop_instance_uid: str, modality: str, *,
                      charset: str = "ISO_IR 100", patient_name: bytes | str = "Roe^Richard") -> Dataset:
    ds.SpecificCharacterSet = charset
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class_uid, sop_instance_uid
    ds.StudyDate, ds.StudyTime, ds.AccessionNumber, ds.Modality = "20260301", "083000.25", "ACC5", modality
    ds.ReferringPhysicianName = "Ref^Doctor"
    ds.StudyDescription = f"{modality} FUZZ SEED"
    ds.SeriesDescription = "seed"
    ds.add_new(0x00100010, "PN", patient_name)
    ds.PatientID, ds.IssuerOfPatientID, ds.PatientBirthDate, ds.PatientSex = "PAT5", "HOSP", "19851231", "M"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = STUDY_UID, SERIES_UID
    ds.StudyID, ds.SeriesNumber, ds.InstanceNumber = "5", 2, 3
    return ds


def image(ds: Dataset, rows: int, columns: int, bits: int, frames: int | None = None) -> Dataset:
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.Rows, ds.Columns, ds.BitsAllocated, ds.BitsStored, ds.HighBit = rows, columns, bits, bits, bits - 1
    ds.PixelRepresentation = 0
    if frames is not None:
        ds.NumberOfFrames = frames
    return ds


def code(value: str, meaning: str) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value, "DCM", meaning
    return item


def undefined_length(ds: Dataset, keyword: str) -> None:
    ds[keyword].is_undefined_length = True
    for item in ds[keyword].value:
        item.is_undefined_length_sequence_item = True


def un_of_undefined_length(tag: int) -> DataElement:
    """A private sequence sent as UN: items in Implicit VR Little Endian whatever the transfer syntax."""
    item = encode(code("UN1", "unknown"), ImplicitVRLittleEndian)
    items = (b"\xfe\xff\x00\xe0" + len(item).to_bytes(4, "little") + item
             + b"\xfe\xff\x00\xe0\xff\xff\xff\xff" + item + ITEM_DELIMITER)
    return DataElement(tag, "UN", items, is_undefined_length=True)


def mr_with_private_elements_and_sequences() -> Dataset:
    ds = patient_and_study(Dataset(), MRImageStorage, uid(2), "MR", charset="ISO_IR 192", patient_name="Müller^Jürgen")
    ds.ProcedureCodeSequence = Sequence([code("MR-BRAIN", "MR brain")])
    referenced = Dataset()
    referenced.ReferencedSOPClassUID, referenced.ReferencedSOPInstanceUID = MRImageStorage, uid(20)
    referenced.PurposeOfReferenceCodeSequence = Sequence([code("121311", "Localizer"), Dataset()])
    undefined_length(referenced, "PurposeOfReferenceCodeSequence")
    ds.ReferencedImageSequence = Sequence([referenced])
    undefined_length(ds, "ReferencedImageSequence")
    ds.add_new(0x00190010, "LO", "TELERAD FUZZ")
    ds.add_new(0x00191001, "DS", "1.5")
    ds.add_new(0x00191002, "OB", bytes(range(16)))
    ds.add(un_of_undefined_length(0x00191003))
    ds.PixelData = bytes(range(4 * 4 * 2))
    return image(ds, 4, 4, 16)


def jpeg(level: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("L", (8, 8), level).save(buffer, format="JPEG", quality=50)
    return buffer.getvalue()


def us_multiframe_jpeg(*, offset_table: bool) -> Dataset:
    ds = patient_and_study(Dataset(), UltrasoundMultiFrameImageStorage, uid(3 + offset_table), "US")
    ds.FrameTime = "33.3"
    ds.add(DataElement(0x7FE00010, "OB", encapsulate([jpeg(10), jpeg(200)], has_bot=offset_table),
                       is_undefined_length=True))
    return image(ds, 8, 8, 8, frames=2)


def secondary_capture_rle_japanese() -> Dataset:
    ds = patient_and_study(Dataset(), SecondaryCaptureImageStorage, uid(5), "OT", charset="\\ISO 2022 IR 87",
                           patient_name=b"Yamada^Tarou=\x1b$B;3ED\x1b(B^\x1b$BB@O:\x1b(B")
    ds.ConversionType = "WSD"
    image(ds, 4, 4, 8)
    ds.PixelData = bytes(range(16))
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(RLELossless, encoding_plugin="pydicom")
    del ds.file_meta
    return ds


def comprehensive_sr(depth: int) -> Dataset:
    ds = patient_and_study(Dataset(), ComprehensiveSRStorage, uid(6), "SR", charset="GB18030",
                           patient_name="Wang^XiaoDong=王^小東")
    ds.ValueType, ds.CompletionFlag, ds.VerificationFlag = "CONTAINER", "COMPLETE", "UNVERIFIED"
    ds.ConceptNameCodeSequence = Sequence([code("18748-4", "Diagnostic imaging report")])
    node = ds
    for level in range(depth):
        child = Dataset()
        child.RelationshipType, child.ValueType, child.TextValue = "CONTAINS", "TEXT", f"finding {level}"
        child.ConceptNameCodeSequence = Sequence([code("121071", "Finding")])
        node.ContentSequence = Sequence([child])
        undefined_length(node, "ContentSequence")
        node = child
    return ds


def encapsulated_pdf() -> Dataset:
    ds = patient_and_study(Dataset(), EncapsulatedPDFStorage, uid(7), "DOC")
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.DocumentTitle = "seed"
    ds.EncapsulatedDocument = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\ntrailer<<>>\n%%EOF\n"
    return ds


def seeds() -> Iterator[Seed]:
    ct = ct_from_write_ct_study()
    for transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
                            DeflatedExplicitVRLittleEndian):
        yield Seed(f"ct_{transfer_syntax.keyword}", transfer_syntax, ct)
    mr = mr_with_private_elements_and_sequences()
    for transfer_syntax in (ExplicitVRLittleEndian, ImplicitVRLittleEndian, DeflatedExplicitVRLittleEndian):
        yield Seed(f"mr_private_sequences_{transfer_syntax.keyword}", transfer_syntax, mr)
    yield Seed("us_multiframe_jpeg_offset_table", JPEGBaseline8Bit, us_multiframe_jpeg(offset_table=True))
    yield Seed("us_multiframe_jpeg_no_offset_table", JPEGBaseline8Bit, us_multiframe_jpeg(offset_table=False))
    yield Seed("sc_rle_iso2022_japanese", RLELossless, secondary_capture_rle_japanese())
    sr = comprehensive_sr(depth=4)
    yield Seed("sr_nested_implicit", ImplicitVRLittleEndian, sr)
    yield Seed("sr_nested_big_endian", ExplicitVRBigEndian, sr)
    yield Seed("pdf_explicit", ExplicitVRLittleEndian, encapsulated_pdf())


def write_corpus(corpus: Path = CORPUS) -> None:
    folders = {name: corpus / name for name in ("read_instance", "stow", "multipart")}
    for folder in folders.values():
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    all_seeds = list(seeds())
    for seed in all_seeds:
        (folders["read_instance"] / f"{seed.name}.bin").write_bytes(seed.read_instance_input())
        (folders["stow"] / f"{seed.name}.dcm").write_bytes(seed.part10())
    files = [seed.part10() for seed in all_seeds]
    (folders["multipart"] / "one_instance.bin").write_bytes(multipart_input([files[0]]))
    (folders["multipart"] / "three_instances.bin").write_bytes(multipart_input(files[5:8]))
    (folders["multipart"] / "unstated_part_type.bin").write_bytes(multipart_input([files[-1]], part_type=None))


if __name__ == "__main__":
    write_corpus()
