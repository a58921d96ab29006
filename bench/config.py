"""The only module of the benchmarks that reads the environment (``BENCH_*``)."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class BenchSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="BENCH_", extra="ignore")

    #: Fewer instances and one round: a smoke test of the harness, not a measurement.
    quick: bool = False
    #: Timed rounds per case (each round runs every system once, interleaved); default 5, quick 1.
    runs: int | None = Field(default=None, ge=1, le=50)
    #: Untimed rounds before them; default 1, quick 0.
    warmups: int | None = Field(default=None, ge=0, le=5)
    output: Path = Path("docs/benchmarks.md")
    #: Also write the results as JSON here (for tests and tooling).
    json_output: Path | None = None
    #: Datasets are generated once under ``<cache_dir>/datasets``; each run's archives live under ``runs/``.
    cache_dir: Path = Path("var/bench")
    #: Comma-separated benchmark names to run (all when empty).
    only: str = ""
    #: Keep every run's archive directories and logs instead of removing them.
    keep: bool = False
    amqp_url: str = "amqp://guest:guest@127.0.0.1:5672/"
    postgres_url: str = "postgresql+asyncpg://postgres@127.0.0.1:5432"
    orthanc: str = "Orthanc"
    #: Telerad's DICOM SCP processes (DICOM_INGEST_SCP_PROCESSES); default: one per core, as deployed.
    scp_processes: int | None = Field(default=None, ge=1, le=64)

    @property
    def telerad_scp_processes(self) -> int:
        return self.scp_processes or os.cpu_count() or 1

    @property
    def timed_runs(self) -> int:
        return self.runs or (1 if self.quick else 5)

    @property
    def warmup_runs(self) -> int:
        if self.warmups is not None:
            return self.warmups
        return 0 if self.quick else 1
