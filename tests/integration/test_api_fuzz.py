"""The gateway's public OpenAPI document is valid, and schemathesis finds no server error behind it.

The platform runs as `make run` runs it (`telerad up`, embedded), in its own process, so that
schemathesis's blocking client and the platform's event loop never share a thread.
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

PASSWORD = "fuzzing is not a password"


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


@pytest.fixture(scope="module")
def tokens(gateway: str) -> dict[str, str]:
    # Signed in before any fuzzing: the fuzzer's failed sign-ins soon lock this address out (as they should).
    return {email: token(gateway, email) for email in ("admin@demo.telerad", "radiologist@demo.telerad")}


@pytest.mark.parametrize("email", ["admin@demo.telerad", "radiologist@demo.telerad"])
def test_schemathesis_finds_no_server_error(gateway: str, tokens: dict[str, str], email: str,
                                            tmp_path: Path) -> None:
    report = tmp_path / "junit.xml"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("schemathesis")), "run", f"{gateway}/openapi.json",
         "--checks", "not_a_server_error", "--phases", "examples,coverage,fuzzing", "--max-examples", "12",
         "--seed", "7", "--workers", "1", "--request-timeout", "10", "--exclude-path", "/api/auth/logout",
         "--exclude-path", "/oidc/logout", "--header", f"Authorization: Bearer {tokens[email]}",
         "--report", "junit", "--report-junit-path", str(report)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "tests=" in report.read_text()
