"""Path and query parameters of the DICOMweb routes, for the OpenAPI document and for checking queries."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

_UID = "A UID (PS3.5 §9.1): digits and dots, at most 64 characters."


class StudyPath(BaseModel):
    study: str = Field(description=f"Study Instance UID. {_UID}")


class SeriesPath(StudyPath):
    series: str = Field(description=f"Series Instance UID. {_UID}")


class InstancePath(SeriesPath):
    instance: str = Field(description=f"SOP Instance UID. {_UID}")


class FramesPath(InstancePath):
    frames: str = Field(description="Frame numbers from 1, comma-separated (PS3.18 §8.3.4.3).", examples=["1,2"])


class FramePath(InstancePath):
    frames: str = Field(description="One frame number, from 1.", examples=["1"])


class BulkDataPath(InstancePath):
    tag: str = Field(description="The top-level attribute's tag as 8 hexadecimal digits.", examples=["7FE00010"])


class RenderedQuery(BaseModel):
    """Rendering parameters (PS3.18 §8.3.5.1)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    window: str | None = Field(default=None, examples=["40,400,linear"],
                               description="center,width[,function]; function linear (default), linear-exact "
                                           "or sigmoid. Default: the first window of the instance.")
    viewport: str | None = Field(default=None, examples=["256,256"],
                                 description="vw,vh[,sx,sy,sw,sh]: fit into vw x vh keeping the aspect ratio, "
                                             "from the source region sx,sy,sw,sh (pixels; negative sw/sh flip).")
    quality: int | None = Field(default=None, ge=1, le=100, description="JPEG quality.")
    accept: str | None = Field(default=None, examples=["image/png"],
                               description="Overrides the Accept header: image/jpeg (default) or image/png.")


class WadoUriQuery(BaseModel):
    """WADO-URI request parameters (PS3.18 §9.1.2, §9.2)."""

    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    requestType: Literal["WADO"] = Field(description="Always WADO.")
    studyUID: str = Field(description=f"Study Instance UID. {_UID}")
    seriesUID: str = Field(description=f"Series Instance UID. {_UID}")
    objectUID: str = Field(description=f"SOP Instance UID. {_UID}")
    contentType: str | None = Field(
        default=None, examples=["application/dicom"],
        description="application/dicom, image/jpeg (the default) or image/png; a comma-separated list in "
                    "order of preference is allowed.")
    frameNumber: int | None = Field(default=None, ge=1, description="The frame to render, from 1.")
    rows: int | None = Field(default=None, ge=1, le=4096, description="Largest height of the rendered image.")
    columns: int | None = Field(default=None, ge=1, le=4096, description="Largest width of the rendered image.")
    region: str | None = Field(default=None, examples=["0.25,0.25,0.75,0.75"],
                               description="x1,y1,x2,y2 as fractions of the image: the part to render.")
    windowCenter: float | None = Field(default=None, description="Window Center for greyscale rendering.")
    windowWidth: float | None = Field(default=None, gt=0, description="Window Width, with windowCenter.")
    imageQuality: int | None = Field(default=None, ge=1, le=100, description="JPEG quality.")
    transferSyntax: str | None = Field(
        default=None, description="For application/dicom: the transfer syntax wanted; only the stored one is served.")
    anonymize: str | None = Field(default=None, description="Not supported: 'yes' is refused.")
