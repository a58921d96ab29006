"""Reference figures and targets from shared/reference/performance.md, shown beside ours.

Measured there on a 2-vCPU VM like this one: Orthanc 1.10.1 (Debian, SQLite index, fsync on) and a
bare pynetdicom SCP, fed by dcmtk storescu with TCP_NODELAY=1; medians [min-max]. The VM drifts by
about 20 % between passes, so compare ratios measured in one run, not absolute figures across runs.
"""

from __future__ import annotations

from dataclasses import dataclass

SOURCE = "shared/reference/performance.md"


@dataclass(frozen=True)
class IngestReference:
    """§2.1-2.3 (measured) and §6 (targets) for one ingest case."""

    orthanc: str
    pynetdicom: str
    must_ratio: float
    ambitious_ratio: float
    #: ING-CPU targets (total platform CPU ms per instance), stated for the P=4 cases only.
    cpu_must_ms: float | None = None
    cpu_ambitious_ms: float | None = None
    #: ING-NAGLE's targets are absolute: Telerad instances/s with a Nagle-enabled sender (must), and as a
    #: fraction of the same archive's ING-SM-1 rate with TCP_NODELAY (ambitious, not checked here).
    must_instances_per_second: float | None = None

    @property
    def figures(self) -> str:
        return f"Orthanc {self.orthanc}; pynetdicom {self.pynetdicom}"

    @property
    def target(self) -> str:
        if self.must_ratio == 0 and self.must_instances_per_second is None:
            return "none in performance.md (reported for the ratio)"
        if self.must_instances_per_second is not None:
            return (f"Telerad >= {self.must_instances_per_second:g} inst/s must; >= {self.ambitious_ratio:.1f}x its "
                    "own ING-SM-1 rate (TCP_NODELAY) ambitious")
        text = f"Telerad/Orthanc >= {self.must_ratio:.1f}x must, >= {self.ambitious_ratio:.1f}x ambitious"
        if self.cpu_must_ms is not None:
            text += f"; CPU <= {self.cpu_must_ms:g} ms/inst must, <= {self.cpu_ambitious_ms:g} ambitious (ING-CPU)"
        return text


INGEST = {
    "ING-CT-1": IngestReference("187 inst/s [145-233], 98 MB/s, 3.3 ms CPU/inst",
                                "raw 183 inst/s, raw+fsync 135 (Orthanc / raw 1.12x)", 0.7, 1.0),
    "ING-CT-4": IngestReference("335 inst/s [277-412], 176 MB/s, 3.3 ms CPU/inst",
                                "raw 178 inst/s, raw+fsync 168 (Orthanc / raw 1.80x)", 0.6, 0.9, 8, 5),
    "ING-SM-1": IngestReference("451 inst/s [364-504], 1.44 ms CPU/inst",
                                "raw 257 inst/s, raw+fsync 235 (Orthanc / raw 1.68x)", 0.5, 0.7),
    "ING-SM-4": IngestReference("676 inst/s [396-762], 1.60 ms CPU/inst",
                                "raw 394 inst/s, raw+fsync 366 (Orthanc / raw 1.64x)", 0.6, 0.9, 5, 3),
    "ING-SM-1-IDX": IngestReference("as ING-SM-1", "as ING-SM-1", 0, 0),
    "ING-NAGLE": IngestReference("11 inst/s with stock storescu (Nagle on; §2.4)",
                                 "raw 22 inst/s, 202-246 with TCP_QUICKACK re-armed before each read", 0, 0.9,
                                 must_instances_per_second=150),
    "ING-ASSOC": IngestReference("not measured in performance.md", "not measured", 0, 0),
}
