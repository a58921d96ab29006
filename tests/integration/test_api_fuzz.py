"""The gateway's public OpenAPI document is valid, and schemathesis finds no server error behind it.

The platform runs as `make run` runs it (`telerad up`, embedded), in its own process, so that
schemathesis's blocking client and the platform's event loop never share a thread. Schemathesis runs
in three processes at once (one alone leaves a core idle): two for the admin, who between them try every
operation, and one for the radiologist, who tries every operation a radiologist may call (the rest answer
them 403 whatever the input, which the admin's runs and test_access's route matrix already show).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from openapi_spec_validator import validate

from gateway.domain import ROUTE_ROLES
from radcommon.contracts import RoleValues

PASSWORD = "fuzzing is not a password"
ADMIN, RADIOLOGIST = "admin@demo.telerad", "radiologist@demo.telerad"
#: Run name: (user, the role whose operations it tries (None: all), its share of them (part, parts)). The admin's
#: operations go to two runs, or that one run would outlast the others by far.
RUNS = {"admin-1": (ADMIN, None, (0, 2)), "admin-2": (ADMIN, None, (1, 2)),
        "radiologist": (RADIOLOGIST, RoleValues.RADIOLOGIST, (0, 1))}
#: Not fuzzed: they end the run's own session.
EXCLUDED_PATHS = {"/api/auth/logout", "/oidc/logout"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    data = tmp_path_factory.mktemp("fuzz")
    port = free_port()
    env = {**os.environ, "TELERAD_DATA_DIR": str(data), "TELERAD_DEMO_PASSWORD": PASSWORD,
           "TELERAD_LOG_LEVEL": "WARNING", "GATEWAY_HTTP_PORT": str(port), "TELERAD_PUBLIC_URL": f"http://127.0.0.1:{port}",
           "IDENTITY_HTTP_PORT": str(free_port()), "WORKLIST_HTTP_PORT": str(free_port()),
           "DICOM_INGEST_HTTP_PORT": str(free_port()), "DICOM_INGEST_DICOM_PORT": str(free_port()),
           "GATEWAY_LOGIN_BURST": "100000", "GATEWAY_LOGIN_PER_MINUTE": "100000", "GATEWAY_USER_BURST": "100000"}
    platform = subprocess.Popen([sys.executable, "-m", "telerad.cli", "up"], env=env, stdout=subprocess.DEVNULL,
                                stderr=(data / "platform.log").open("w"))
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline or platform.poll() is not None:
                    raise AssertionError((data / "platform.log").read_text()[-3000:]) from None
                time.sleep(0.3)
        time.sleep(1)  # the demo organisation is seeded right after the gateway starts
        yield url
    finally:
        platform.terminate()
        platform.wait(30)
        log = (data / "platform.log").read_text()
        assert '"unhandled error"' not in log, log[-5000:]


def token(url: str, email: str) -> str:
    request = urllib.request.Request(f"{url}/api/auth/login", method="POST", headers={
        "Content-Type": "application/json"}, data=json.dumps({"email": email, "password": PASSWORD}).encode())
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["access_token"])


def test_the_public_document_is_valid_openapi_and_covers_the_routes(gateway: str) -> None:
    with urllib.request.urlopen(f"{gateway}/openapi.json", timeout=10) as response:
        document = json.load(response)
    validate(document)
    assert document["openapi"] == "3.1.0"
    assert {"/api/worklist", "/api/auth/login", "/api/modalities", "/oidc/token"} <= set(document["paths"])
    assert document["paths"]["/api/worklist"]["get"]["security"] == [{"bearerAuth": []}]
    assert "security" not in document["paths"]["/api/auth/login"]["post"]


def documented_operations(gateway: str) -> list[str]:
    with urllib.request.urlopen(f"{gateway}/openapi.json", timeout=10) as response:
        paths = json.load(response)["paths"]
    methods = {"get", "put", "post", "delete", "patch", "head", "options"}
    return sorted(f"{method.upper()} {path}" for path, item in paths.items() for method in item if method in methods)


def operations_of(documented: list[str], role: RoleValues | None, part: int = 0, parts: int = 1) -> list[str]:
    """Share ``part`` of ``parts`` of the documented operations that ``role`` may call (None: of all of them)."""
    allowed = {f"{method} {path}" for (method, path), roles in ROUTE_ROLES.items() if role in roles}
    chosen = [name for name in documented
              if name.split(" ", 1)[1] not in EXCLUDED_PATHS and (role is None or name in allowed)]
    return chosen[part::parts]


@pytest.fixture(scope="module")
def fuzzing(gateway: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[str, tuple[subprocess.Popen[bytes], Path]]]:
    """Every run of RUNS, all started at once: ``{run: (process, its folder)}``. Each writes ``output.txt`` (not a
    pipe nobody reads while another run is awaited) and ``junit.xml``, with a session of its own."""
    # Signed in before any fuzzing: the fuzzer's failed sign-ins soon lock this address out (as they should).
    tokens = {name: token(gateway, email) for name, (email, _, _) in RUNS.items()}
    documented = documented_operations(gateway)
    runs: dict[str, tuple[subprocess.Popen[bytes], Path]] = {}
    try:
        for name, (_, role, (part, parts)) in RUNS.items():
            folder = tmp_path_factory.mktemp(f"schemathesis-{name}")
            operations = [f"--include-name={operation}" for operation in operations_of(documented, role, part, parts)]
            with (folder / "output.txt").open("wb") as output:
                runs[name] = subprocess.Popen(
                    [str(Path(sys.executable).with_name("schemathesis")), "run", f"{gateway}/openapi.json",
                     "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing", "--max-examples", "8",
                     "--seed", "7", "--workers", "1", "--request-timeout", "10",
                     "--header", f"Authorization: Bearer {tokens[name]}", *operations,
                     "--report", "junit", "--report-junit-path", str(folder / "junit.xml")],
                    stdout=output, stderr=subprocess.STDOUT), folder
        yield runs
    finally:
        for process, _ in runs.values():
            if process.poll() is None:
                process.kill()
            process.wait()


def test_the_runs_try_every_operation_and_the_radiologist_all_of_theirs(gateway: str) -> None:
    documented = documented_operations(gateway)
    admin = [operation for part in (0, 1) for operation in operations_of(documented, None, part, 2)]
    fuzzed = {name for name in documented if name.split(" ", 1)[1] not in EXCLUDED_PATHS}
    assert sorted(admin) == sorted(fuzzed) and len(fuzzed) >= 100
    radiologist = set(operations_of(documented, RoleValues.RADIOLOGIST))
    may = {f"{method} {path}" for (method, path), roles in ROUTE_ROLES.items() if RoleValues.RADIOLOGIST in roles}
    assert radiologist == may & fuzzed
    assert {"GET /api/worklist", "POST /api/signatures/sign", "GET /dicomweb/studies"} <= radiologist
    assert "POST /api/organizations" not in radiologist and len(radiologist) >= 40


@pytest.mark.parametrize("run", list(RUNS))
def test_schemathesis_finds_no_server_error(fuzzing: dict[str, tuple[subprocess.Popen[bytes], Path]],
                                            run: str) -> None:
    process, folder = fuzzing[run]
    process.wait(600)
    assert process.returncode == 0, (folder / "output.txt").read_text(errors="replace")[-8000:]
    assert "tests=" in (folder / "junit.xml").read_text()
