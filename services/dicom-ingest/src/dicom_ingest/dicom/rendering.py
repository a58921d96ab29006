"""Rendered images of an instance's frames: JPEG or PNG for a person to look at (PS3.18 §8.3.5, §9.2).

A greyscale frame goes through the Grayscale Image Transformation Model of PS3.4 §N.2: the Modality
LUT (Rescale Slope and Intercept, or a Modality LUT Sequence), then the VOI LUT — the window the
request asks for, else the first Window Center/Width of the file, else its VOI LUT Sequence, else
the full range of the frame — then MONOCHROME1 is inverted. Colour frames are shown as they are
(YBR converted to RGB, Palette Color through its LUTs). The result is cropped, scaled into the
viewport keeping its aspect ratio, and encoded with Pillow.

Everything here is blocking CPU work: callers run it in a thread pool, never on the event loop.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi_lut, pixel_array

from dicom_ingest.dicom.media_types import JPEG, PNG

MAX_VIEWPORT = 4096
DEFAULT_QUALITY = 90
THUMBNAIL_SIZE = 128


class VoiLutFunctionValues(StrEnum):
    """VOI LUT Function (0028,1056) defined terms (PS3.3 §C.11.2.1.3)."""

    LINEAR = "LINEAR"
    LINEAR_EXACT = "LINEAR_EXACT"
    SIGMOID = "SIGMOID"


class NotRenderable(ValueError):
    """The instance has no pixel data this renderer can show."""


class FrameOutOfRange(ValueError):
    """The frame number is not one of the instance's frames."""


@dataclass(frozen=True)
class Window:
    """A VOI window: Window Center (0028,1050), Window Width (0028,1051) and the function between."""

    center: float
    width: float
    function: VoiLutFunctionValues = VoiLutFunctionValues.LINEAR

    def __post_init__(self) -> None:
        if not np.isfinite(self.center) or not np.isfinite(self.width):
            raise ValueError("window center and width must be finite numbers")
        if self.function == VoiLutFunctionValues.LINEAR and self.width < 1:
            raise ValueError("a LINEAR window's width must be at least 1 (PS3.3 §C.11.2.1.2.1)")
        if self.width <= 0:
            raise ValueError("a window's width must be positive (PS3.3 §C.11.2.1.3)")


@dataclass(frozen=True)
class Viewport:
    """``viewport=vw,vh[,sx,sy,sw,sh]`` (PS3.18 §8.3.5.1.3): the size to fit into, and optionally the
    source region in pixels (a negative ``sw``/``sh`` flips the image)."""

    columns: int
    rows: int
    source: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class RenderOptions:
    media_type: str = JPEG
    window: Window | None = None
    viewport: Viewport | None = None
    #: WADO-URI ``region=x1,y1,x2,y2``: the part of the image to show, as fractions (PS3.18 §9.2.2.2).
    region: tuple[float, float, float, float] | None = None
    quality: int = DEFAULT_QUALITY


def apply_window(values: np.ndarray[Any, Any], window: Window, y_min: float = 0.0, y_max: float = 255.0
                 ) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Map modality values to ``[y_min, y_max]`` through a window.

    LINEAR is PS3.3 §C.11.2.1.2.1, LINEAR_EXACT §C.11.2.1.3.2, SIGMOID §C.11.2.1.3.1.
    """
    x = np.asarray(values, dtype=np.float64)
    c, w, span = window.center, window.width, y_max - y_min
    if window.function == VoiLutFunctionValues.SIGMOID:
        with np.errstate(over="ignore"):
            return span / (1.0 + np.exp(-4.0 * (x - c) / w)) + y_min  # type: ignore[no-any-return]
    if window.function == VoiLutFunctionValues.LINEAR_EXACT:
        low, high = c - w / 2, c + w / 2
        inside = ((x - c) / w + 0.5) * span + y_min
    else:
        low, high = c - 0.5 - (w - 1) / 2, c - 0.5 + (w - 1) / 2
        with np.errstate(divide="ignore", invalid="ignore"):  # w == 1: every value is below or above
            inside = ((x - (c - 0.5)) / (w - 1) + 0.5) * span + y_min
    return np.where(x <= low, y_min, np.where(x > high, y_max, inside))


def parse_window(text: str) -> Window:
    """``center,width[,function]`` with function ``linear``, ``linear-exact`` or ``sigmoid`` (PS3.18 §8.3.5.1.4).

    Raises
    ------
    ValueError
        On anything else.
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 3):
        raise ValueError("window is center,width[,function]")
    function = VoiLutFunctionValues.LINEAR
    if len(parts) == 3:
        try:
            function = VoiLutFunctionValues(parts[2].upper().replace("-", "_"))
        except ValueError:
            raise ValueError("the window function is linear, linear-exact or sigmoid") from None
    return Window(_number(parts[0]), _number(parts[1]), function)


def parse_viewport(text: str) -> Viewport:
    """``vw,vh`` or ``vw,vh,sx,sy,sw,sh`` (PS3.18 §8.3.5.1.3); sizes 1 to :data:`MAX_VIEWPORT`.

    Raises
    ------
    ValueError
        On anything else.
    """
    parts = [p.strip() for p in text.split(",")]
    if len(parts) not in (2, 6):
        raise ValueError("viewport is vw,vh or vw,vh,sx,sy,sw,sh")
    columns, rows = (_size(p) for p in parts[:2])
    if len(parts) == 2:
        return Viewport(columns, rows)
    sx, sy, sw, sh = (_number(p) for p in parts[2:])
    if sx < 0 or sy < 0 or sw == 0 or sh == 0:
        raise ValueError("the viewport's source region needs sx, sy >= 0 and non-zero sw, sh")
    return Viewport(columns, rows, (sx, sy, sw, sh))


def parse_region(text: str) -> tuple[float, float, float, float]:
    """WADO-URI ``region=x1,y1,x2,y2``, fractions of the image with x1 < x2 and y1 < y2 (PS3.18 §9.2.2.2)."""
    parts = [_number(p) for p in text.split(",")]
    if len(parts) != 4 or not all(0.0 <= p <= 1.0 for p in parts) or parts[0] >= parts[2] or parts[1] >= parts[3]:
        raise ValueError("region is x1,y1,x2,y2 with 0 <= x1 < x2 <= 1 and 0 <= y1 < y2 <= 1")
    return parts[0], parts[1], parts[2], parts[3]


def fit(columns: int, rows: int, max_columns: int, max_rows: int) -> tuple[int, int]:
    """The largest size of the same aspect ratio as ``columns`` x ``rows`` within the maximum."""
    scale = min(max_columns / columns, max_rows / rows)
    return max(1, round(columns * scale)), max(1, round(rows * scale))


def number_of_frames(dataset: Any) -> int:
    try:
        return max(1, int(dataset.get("NumberOfFrames") or 1))
    except (TypeError, ValueError):
        return 1


def render(data: bytes, frame_number: int, options: RenderOptions) -> bytes:
    """Render frame ``frame_number`` (1-based) of the PS3.10 file ``data`` as ``options.media_type``.

    Raises
    ------
    NotRenderable
        Without pixel data, or with pixel data that cannot be decoded.
    FrameOutOfRange
        For a frame the instance does not have.
    """
    dataset = dcmread(io.BytesIO(data))
    if "PixelData" not in dataset:
        raise NotRenderable("the instance has no pixel data")
    if not 1 <= frame_number <= number_of_frames(dataset):
        raise FrameOutOfRange(f"the instance has no frame {frame_number}")
    try:
        frame = np.asarray(pixel_array(dataset, index=frame_number - 1))
    except Exception as error:  # a decoder missing, or a broken bitstream
        raise NotRenderable(f"the pixel data cannot be decoded: {error}") from None
    if frame.ndim == 3 and frame.shape[-1] == 1:
        frame = frame[..., 0]
    image = Image.fromarray(_eight_bits(frame, dataset, options.window))
    return encode(_shape(image, options), options)


def encode(image: Image.Image, options: RenderOptions) -> bytes:
    out = io.BytesIO()
    if options.media_type == PNG:
        image.save(out, format="PNG")
    elif options.media_type == JPEG:
        image.save(out, format="JPEG", quality=options.quality)
    else:
        raise ValueError(f"cannot render {options.media_type}")
    return out.getvalue()


def _eight_bits(frame: np.ndarray[Any, Any], dataset: Any, window: Window | None) -> np.ndarray[Any, Any]:
    photometric = str(dataset.get("PhotometricInterpretation", "MONOCHROME2")).strip().upper()
    if photometric in ("MONOCHROME1", "MONOCHROME2") and frame.ndim == 2:
        values = np.asarray(apply_modality_lut(frame, dataset))
        shown = _voi(values, dataset, window)
        if photometric == "MONOCHROME1":
            shown = 255.0 - shown
        return np.asarray(np.clip(np.rint(shown), 0, 255), dtype=np.uint8)
    if photometric == "PALETTE COLOR" and frame.ndim == 2:
        frame = np.asarray(apply_color_lut(frame, dataset))
    if frame.ndim != 3 or frame.shape[-1] != 3:
        raise NotRenderable(f"cannot render {photometric} pixel data of shape {frame.shape}")
    if frame.dtype.itemsize > 1:  # 16-bit colour (or a 16-bit palette): keep the top 8 bits
        top = max(int(frame.max()), 1).bit_length()
        frame = frame >> max(top - 8, 0)
    return np.asarray(np.clip(frame, 0, 255), dtype=np.uint8)


def _voi(values: np.ndarray[Any, Any], dataset: Any, window: Window | None) -> np.ndarray[Any, Any]:
    if window is None:
        window = window_of(dataset)
    if window is not None:
        return apply_window(values, window)
    if "VOILUTSequence" in dataset:
        try:
            values = np.asarray(apply_voi_lut(values, dataset, prefer_lut=True), dtype=np.float64)
        except Exception:  # a broken LUT: fall back to the frame's own range
            values = np.asarray(values, dtype=np.float64)
    low, high = float(np.min(values)), float(np.max(values))
    if high <= low:
        return np.zeros(values.shape, dtype=np.float64)
    return apply_window(values, Window((low + high) / 2, high - low, VoiLutFunctionValues.LINEAR_EXACT))


def window_of(dataset: Any) -> Window | None:
    """The first Window Center / Width of the file with its VOI LUT Function, if valid."""
    try:
        center, width = (_first(dataset.get(keyword)) for keyword in ("WindowCenter", "WindowWidth"))
        if center is None or width is None:
            return None
        function = VoiLutFunctionValues(str(dataset.get("VOILUTFunction") or "LINEAR").strip().upper())
        return Window(center, width, function)
    except (TypeError, ValueError):
        return None


def _first(value: Any) -> float | None:
    if value is not None and not isinstance(value, int | float | str):  # a MultiValue: the first one counts
        value = value[0] if len(value) else None
    return None if value is None or value == "" else float(value)


def _shape(image: Image.Image, options: RenderOptions) -> Image.Image:
    columns, rows = image.size
    if options.region is not None:
        x1, y1, x2, y2 = options.region
        box = (round(x1 * columns), round(y1 * rows), round(x2 * columns), round(y2 * rows))
        image = image.crop((box[0], box[1], max(box[2], box[0] + 1), max(box[3], box[1] + 1)))
        columns, rows = image.size
    viewport = options.viewport
    if viewport is None:
        return image
    if viewport.source is not None:
        sx, sy, sw, sh = viewport.source
        x0, x1 = (min(max(round(v), 0), columns) for v in sorted((sx, sx + sw)))
        y0, y1 = (min(max(round(v), 0), rows) for v in sorted((sy, sy + sh)))
        if x1 <= x0 or y1 <= y0:
            raise ValueError("the viewport's source region lies outside the image")
        image = image.crop((x0, y0, x1, y1))
        if sw < 0:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if sh < 0:
            image = image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)
    size = fit(image.size[0], image.size[1], viewport.columns, viewport.rows)
    return image if size == image.size else image.resize(size, Image.Resampling.LANCZOS)


def _number(text: str) -> float:
    value = float(text)
    if not np.isfinite(value):
        raise ValueError(f"not a finite number: {text[:40]!r}")
    return value


def _size(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= MAX_VIEWPORT:
        raise ValueError(f"a viewport size is a whole number from 1 to {MAX_VIEWPORT}")
    return int(text)
