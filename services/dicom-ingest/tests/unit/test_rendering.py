import io

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.uid import RLELossless, generate_uid

from dicom_ingest.dicom.media_types import JPEG, PNG
from dicom_ingest.dicom.rendering import (
    FrameOutOfRange,
    NotRenderable,
    RenderOptions,
    Viewport,
    VoiLutFunctionValues,
    Window,
    apply_window,
    fit,
    parse_region,
    parse_viewport,
    parse_window,
    render,
    window_of,
)
from support.studies import ORG_ROOT, ct_instance

LINEAR, LINEAR_EXACT, SIGMOID = (VoiLutFunctionValues.LINEAR, VoiLutFunctionValues.LINEAR_EXACT,
                                 VoiLutFunctionValues.SIGMOID)


def file_bytes(ds: Dataset) -> bytes:
    out = DicomBytesIO()
    ds.save_as(out, enforce_file_format=True)
    return bytes(out.getvalue())


def ct(pixels: np.ndarray, **attributes: object) -> Dataset:
    rows, columns = pixels.shape[-2:]
    ds = ct_instance(generate_uid(ORG_ROOT), generate_uid(ORG_ROOT), 1, 1, pixels.astype("<u2").tobytes(), rows,
                     "ACC", "PAT", "Doe^Jane")
    ds.Columns = columns
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return ds


def decoded(body: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(body)))


# --- the VOI LUT functions of PS3.3 C.11.2.1.2 and C.11.2.1.3 ------------------------------------------------------

def test_linear_window_follows_the_standard_formula_and_clips_at_its_edges() -> None:
    # c=40, w=400: below c - 0.5 - (w-1)/2 = -160 is black, above c - 0.5 + (w-1)/2 = 239 is white
    values = np.array([-1000, -160, -159, 39.5, 239, 240, 3000])
    out = apply_window(values, Window(40, 400, LINEAR))
    expected_inside = [((x - 39.5) / 399 + 0.5) * 255 for x in (-159, 39.5, 239)]
    assert out.tolist() == pytest.approx([0, 0, expected_inside[0], expected_inside[1], expected_inside[2], 255, 255])
    assert out[3] == pytest.approx(127.5)


def test_linear_window_of_width_one_is_a_threshold() -> None:
    out = apply_window(np.array([9.0, 9.5, 9.6, 10.0]), Window(10, 1, LINEAR))
    assert out.tolist() == [0, 0, 255, 255]


def test_linear_exact_and_sigmoid_windows() -> None:
    exact = apply_window(np.array([-200, -150, 0, 50, 150, 151]), Window(0, 300, LINEAR_EXACT))
    assert exact.tolist() == pytest.approx([0, 0, 127.5, (50 / 300 + 0.5) * 255, 255, 255])
    sigmoid = apply_window(np.array([0.0, 100.0, -1e6]), Window(0, 200, SIGMOID))
    assert sigmoid.tolist() == pytest.approx([127.5, 255 / (1 + np.exp(-2.0)), 0.0])


def test_window_parameters_are_parsed_and_checked() -> None:
    assert parse_window("40,400") == Window(40, 400, LINEAR)
    assert parse_window(" -600 , 1500 , linear-exact") == Window(-600, 1500, LINEAR_EXACT)
    assert parse_window("0,2,SIGMOID").function == SIGMOID
    for bad in ("40", "40,400,cubic", "a,b", "40,0", "40,0.5", "nan,400", "40,inf", "1,2,3,4", "", "40,-5,sigmoid"):
        with pytest.raises(ValueError):
            parse_window(bad)


def test_viewport_and_region_parameters() -> None:
    assert parse_viewport("256,128") == Viewport(256, 128)
    assert parse_viewport("64,64,10,20,-30,40") == Viewport(64, 64, (10, 20, -30, 40))
    for bad in ("0,10", "10", "10,10,1,2,3", "99999,10", "10,10,-1,0,5,5", "10,10,0,0,0,5", "a,b", "1.5,2"):
        with pytest.raises(ValueError):
            parse_viewport(bad)
    assert parse_region("0.25,0,1,0.5") == (0.25, 0.0, 1.0, 0.5)
    for bad in ("0.5,0,0.5,1", "0,0,1.5,1", "0,0,1", "-0.1,0,1,1"):
        with pytest.raises(ValueError):
            parse_region(bad)


def test_fit_keeps_the_aspect_ratio() -> None:
    assert fit(512, 256, 128, 128) == (128, 64)
    assert fit(100, 400, 50, 1000) == (50, 200)
    assert fit(64, 64, 256, 300) == (256, 256)
    assert fit(1000, 1, 10, 10) == (10, 1)


def test_the_files_window_and_function_are_read() -> None:
    ds = Dataset()
    assert window_of(ds) is None
    ds.WindowCenter, ds.WindowWidth = ["40", "300"], ["400", "1500"]
    ds.VOILUTFunction = "SIGMOID"
    assert window_of(ds) == Window(40, 400, SIGMOID)
    ds.WindowWidth = "0"
    assert window_of(ds) is None  # invalid in the file: the renderer falls back to the frame's range


# --- rendering real data sets ----------------------------------------------------------------------------------

def test_a_ct_frame_goes_through_rescale_then_the_files_window() -> None:
    stored = np.array([[0, 824, 1024, 1064], [1224, 1264, 2000, 4095]], dtype=np.uint16)  # HU = stored - 1024
    png = decoded(render(file_bytes(ct(stored)), 1, RenderOptions(PNG)))
    expected = np.clip(np.rint(apply_window(stored.astype(float) - 1024, Window(40, 400))), 0, 255)
    assert png.shape == (2, 4)
    assert png.tolist() == expected.astype(np.uint8).tolist()
    assert png[0, 0] == 0 and png[1, 3] == 255 and 0 < png[0, 3] < 255


def test_the_requested_window_overrides_the_files_and_monochrome1_is_inverted() -> None:
    stored = np.array([[1024, 1074, 1124, 1174]], dtype=np.uint16)
    options = RenderOptions(PNG, window=Window(50, 101, LINEAR))
    plain = decoded(render(file_bytes(ct(stored)), 1, options))
    inverted = decoded(render(file_bytes(ct(stored, PhotometricInterpretation="MONOCHROME1")), 1, options))
    # HU 0, 50, 100, 150; ((x - 49.5) / 100 + 0.5) * 255 inside (-0.5, 99.5]
    assert plain.tolist() == [[1, 129, 255, 255]]
    assert inverted.tolist() == [[254, 126, 0, 0]]


def test_without_any_window_the_frames_range_is_shown() -> None:
    stored = np.array([[100, 200], [300, 400]], dtype=np.uint16)
    ds = ct(stored)
    del ds.WindowCenter, ds.WindowWidth
    png = decoded(render(file_bytes(ds), 1, RenderOptions(PNG)))
    assert png.min() == 0 and png.max() == 255 and png[0, 1] < png[1, 0]


def test_viewport_scales_and_crops_and_jpeg_decodes() -> None:
    stored = np.tile(np.arange(64, dtype=np.uint16) * 60, (32, 1))  # 64 wide, 32 high, brightening to the right
    data = file_bytes(ct(stored))
    image = Image.open(io.BytesIO(render(data, 1, RenderOptions(JPEG, viewport=Viewport(128, 128)))))
    assert (image.format, image.size) == ("JPEG", (128, 64))
    cropped = decoded(render(data, 1, RenderOptions(PNG, window=Window(0, 4000),
                                                     viewport=Viewport(16, 16, (0, 0, 16, 16)))))
    flipped = decoded(render(data, 1, RenderOptions(PNG, window=Window(0, 4000),
                                                     viewport=Viewport(16, 16, (16, 0, -16, 16)))))
    assert cropped.shape == (16, 16)
    assert cropped[0, 0] < cropped[0, 15] and flipped[0, 0] > flipped[0, 15]
    with pytest.raises(ValueError):
        render(data, 1, RenderOptions(PNG, viewport=Viewport(16, 16, (500, 500, 10, 10))))


def test_a_compressed_multi_frame_instance_renders_the_frame_asked_for() -> None:
    frames = np.stack([np.full((8, 8), 1024, np.uint16), np.full((8, 8), 1424, np.uint16)])
    ds = ct(frames[0])
    ds.NumberOfFrames = 2
    ds.PixelData = frames.astype("<u2").tobytes()
    ds.compress(RLELossless)
    data = file_bytes(ds)
    options = RenderOptions(PNG, window=Window(0, 800, LINEAR_EXACT))  # HU 0 -> 127.5, HU 400 -> 255
    assert set(decoded(render(data, 1, options)).ravel().tolist()) == {128}
    assert set(decoded(render(data, 2, options)).ravel().tolist()) == {255}
    with pytest.raises(FrameOutOfRange):
        render(data, 3, options)


def test_an_instance_without_pixel_data_is_not_renderable() -> None:
    ds = ct(np.zeros((2, 2), np.uint16))
    del ds.PixelData
    with pytest.raises(NotRenderable):
        render(file_bytes(ds), 1, RenderOptions())


def test_rgb_is_shown_as_it_is() -> None:
    ds = ct(np.zeros((2, 2), np.uint16))
    rgb = np.array([[[255, 0, 0], [0, 255, 0]], [[0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 8, 8, 7
    ds.PixelData = rgb.tobytes()
    assert decoded(render(file_bytes(ds), 1, RenderOptions(PNG))).tolist() == rgb.tolist()
