from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from radcommon.config import ServiceSettings


class DicomIngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="DICOM_INGEST_", extra="ignore")

    http_port: int = 8081
    dicom_host: str = "127.0.0.1"
    dicom_port: int = Field(default=11112, ge=0, le=65535)
    ae_title: str = Field(default="TELERAD", min_length=1, max_length=16, pattern=r"^[ -~]*[!-~][ -~]*$")
    storage_dir: Path | None = None
    #: Processes running the DIMSE SCP. 1: a thread pool in the service's own process. N > 1 (PostgreSQL
    #: only): N worker processes listening on the one port (SO_REUSEPORT), the kernel spreading associations
    #: among them, so ingest is not held to one core by the GIL; connection caps apply per process.
    scp_processes: int = Field(default=1, ge=1, le=64)
    settle_seconds: float = Field(default=1.5, ge=0)
    settle_poll_seconds: float = Field(default=0.25, gt=0)
    #: Largest P-DATA-TF PDU we ask peers to send (PS3.8 §9.3.1); 0 would mean unlimited.
    maximum_pdu_size: int = Field(default=256 * 1024, ge=4096, le=16 * 1024**2)
    #: Largest A-ASSOCIATE-RQ PDU we read; a larger announced length is aborted unread.
    maximum_associate_request_size: int = Field(default=64 * 1024, ge=4096, le=16 * 1024**2)
    #: Concurrent TCP connections in all (idle ones are closed first when full) and from one address.
    maximum_associations: int = Field(default=64, ge=1, le=1000)
    maximum_connections_per_address: int = Field(default=8, ge=1, le=1000)
    #: Also ARTIM and the deadline for the A-ASSOCIATE-RQ after connecting (PS3.8 §9.1.5).
    acse_timeout_seconds: float = Field(default=5, gt=0)
    dimse_timeout_seconds: float = Field(default=60, gt=0)
    #: Idle time before an established association is aborted; also the deadline for reading one PDU.
    network_timeout_seconds: float = Field(default=30, gt=0)
    index_timeout_seconds: float = Field(default=30, gt=0)
    #: Answer C-STORE requests straight from the socket (dicom_ingest.adapters.direct_store) rather than
    #: through pynetdicom's DIMSE layer; false only to compare the two or to rule the lane out.
    direct_store: bool = True
    #: On PostgreSQL with keep_first, index a C-STORE from the thread that received it (psycopg) rather than
    #: through the event loop (dicom_ingest.adapters.thread_index); false only to compare the two.
    index_in_scp_thread: bool = True
    #: When a C-STORE is answered Success. "written": once its file is durably in the spool, indexed right behind
    #: it in batches, its association's release (and queries on it) waiting for that (dicom_ingest.adapters.
    #: spool_index; PostgreSQL with keep_first and index_in_scp_thread, else "indexed"). "indexed": once indexed.
    acknowledge_when: Literal["written", "indexed"] = "written"
    #: Largest data set one C-STORE may carry; a larger one is read to its end, not kept, and refused 0xA700.
    maximum_store_bytes: int = Field(default=2 * 1024**3, ge=1024)
    #: DICOMweb as clients reach it (RetrieveURL, BulkDataURI); default: TELERAD_PUBLIC_URL + /dicomweb.
    dicomweb_url: str | None = None
    #: STOW-RS caps: one instance, one request (all its parts), the parts of one request.
    stow_max_part_bytes: int = Field(default=512 * 1024**2, ge=1024)
    stow_max_request_bytes: int = Field(default=2 * 1024**3, ge=1024)
    stow_max_parts: int = Field(default=10_000, ge=1)
    #: Threads that check, read and render instances for DICOMweb, off the event loop.
    dicomweb_threads: int = Field(default=4, ge=1, le=64)
    fsync: bool = True
    #: Remote PACS, Telerad being the SCU: TCP connect, A-ASSOCIATE answer, each DIMSE response, idle network.
    remote_connection_timeout_seconds: float = Field(default=5, gt=0)
    remote_acse_timeout_seconds: float = Field(default=10, gt=0)
    remote_dimse_timeout_seconds: float = Field(default=120, gt=0)
    remote_network_timeout_seconds: float = Field(default=120, gt=0)
    #: A whole C-ECHO or C-FIND asked over HTTP; keep it below the gateway's upstream timeout (10 s).
    remote_request_timeout_seconds: float = Field(default=8, gt=0)
    #: Retrievals and sends running at once (each in a thread of its own); more wait, queued.
    remote_jobs_concurrency: int = Field(default=2, ge=1, le=32)
    #: How often a process records that its jobs live; a job unheard of for remote_job_stale_seconds is interrupted.
    remote_job_heartbeat_seconds: float = Field(default=2, gt=0)
    remote_job_stale_seconds: float = Field(default=30, gt=0)
    #: A second copy of a SOP Instance UID the organisation holds: "keep_first" discards it, "overwrite" replaces
    #: the held copy (same study and series only, else refused with 0xA900) and announces the study again.
    duplicate_policy: Literal["keep_first", "overwrite"] = "keep_first"
