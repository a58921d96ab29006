"""The OHIF viewer: preparing a downloaded package for /viewer/, and serving it from the gateway bootstrap builds."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import json
import re
import tarfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from gateway.bootstrap import build
from gateway.config import GatewaySettings
from gateway.viewer import MARKER, PackageError, app_config, files_key, prepare, study_url
from radcommon.config import CommonSettings
from radcommon.messaging.local import LocalBus

PUBLIC_URL = "https://telerad.example"
INDEX = ('<!doctype html><html><head><meta name="msapplication-TileImage" content="/assets/tile.png">'
         '<script>console.time("scriptToView"),window.PUBLIC_URL="/"</script>'
         '<link rel="manifest" href="/manifest.json"><script rel="preload" as="script" src="/app-config.js"></script>'
         '<script rel="preload" as="script" type="module" src="/init-service-worker.js"></script>'
         '<script>function browserImportFunction(n){return import(n)}window.PUBLIC_URL="/"</script>'
         '<script defer src="/app.bundle.0f6159c501addfe9.js"></script><link href="/app.bundle.css" rel="stylesheet">'
         '<link rel="icon" href="//cdn.example/x.ico"></head><body><div id="root"></div></body></html>')
RUNTIME = '(() => { __webpack_require__.p = "/"; })(); // ' + "x" * 2000
PACKAGE = {
    "package/package.json": b'{"name": "@ohif/app"}',
    "package/dist/index.html": INDEX.encode(),
    "package/dist/app.bundle.0f6159c501addfe9.js": RUNTIME.encode(),
    "package/dist/app.bundle.0f6159c501addfe9.js.map": b"{}",
    "package/dist/app.bundle.css": b"@font-face{src:url(/a34f9d1faa5f3315.woff2)}body{background:url('//cdn/x.png')}",
    "package/dist/a34f9d1faa5f3315.woff2": b"wOF2",
    "package/dist/5130ccb17e3f3f5b.wasm": b"\0asm" + bytes(2000),
    "package/dist/manifest.json": b'{"icons": [{"src": "/assets/icon.png"}], "start_url": "/"}',
    "package/dist/assets/icon.png": b"\x89PNG",
    "package/dist/app-config.js": b"window.config = {dataSources: ['someone else']};",
    "package/dist/sw.js": b"self.addEventListener('fetch', () => {});",
    "package/dist/init-service-worker.js": b"navigator.serviceWorker.register('/sw.js');",
    "package/dist/_headers": b"/*\n  X: y",
}


def tarball(folder: Path, files: dict[str, bytes], *, link: str | None = None) -> tuple[Path, str]:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name, content in files.items():
            member = tarfile.TarInfo(name)
            member.size = len(content)
            archive.addfile(member, io.BytesIO(content))
        if link:
            member = tarfile.TarInfo("package/dist/link.js")
            member.type, member.linkname = tarfile.SYMTYPE, link
            archive.addfile(member)
    path = folder / "app.tgz"
    path.write_bytes(buffer.getvalue())
    return path, "sha512-" + base64.b64encode(hashlib.sha512(buffer.getvalue()).digest()).decode()


def test_prepare_moves_the_public_path_to_viewer_and_leaves_out_what_is_not_ours_to_serve(tmp_path: Path) -> None:
    package, integrity = tarball(tmp_path, PACKAGE)
    target = tmp_path / "ohif" / "viewer"

    prepare(package, target, integrity=integrity, version="3.13.2")

    index = (target / "index.html").read_text()
    assert index.count('window.PUBLIC_URL="/viewer/"') == 2 and 'window.PUBLIC_URL="/"' not in index
    assert 'src="/viewer/app.bundle.0f6159c501addfe9.js"' in index and 'href="/viewer/manifest.json"' in index
    assert 'content="/viewer/assets/tile.png"' in index and 'href="//cdn.example/x.ico"' in index
    assert "init-service-worker" not in index
    assert '__webpack_require__.p = "/viewer/";' in (target / "app.bundle.0f6159c501addfe9.js").read_text()
    css = (target / "app.bundle.css").read_text()
    assert "url(/viewer/a34f9d1faa5f3315.woff2)" in css and "url('//cdn/x.png')" in css
    assert json.loads((target / "manifest.json").read_text()) == {"icons": [{"src": "/viewer/assets/icon.png"}],
                                                                  "start_url": "/viewer/"}
    for absent in ("app-config.js", "sw.js", "init-service-worker.js", "_headers", "package.json",
                   "app.bundle.0f6159c501addfe9.js.map"):
        assert not (target / absent).exists(), absent
    assert gzip.decompress((target / "app.bundle.0f6159c501addfe9.js.gz").read_bytes()).startswith(b"(() => {")
    assert json.loads((target / MARKER).read_text())["version"] == "3.13.2"
    assert sorted(p.name for p in target.parent.iterdir()) == ["viewer"]  # no staging folder left


@pytest.mark.parametrize("problem", ["integrity", "traversal", "symlink", "layout"])
def test_a_bad_package_is_refused_and_the_installed_viewer_stays_as_it_was(tmp_path: Path, problem: str) -> None:
    good, integrity = tarball(tmp_path, PACKAGE)
    target = tmp_path / "ohif" / "viewer"
    prepare(good, target, integrity=integrity, version="1")
    (tmp_path / "bad").mkdir()
    files = {**PACKAGE, "package/dist/another.js": b"x"}
    if problem == "traversal":
        files["package/dist/../../../escaped.js"] = b"x"
    if problem == "layout":
        files["package/dist/app.bundle.0f6159c501addfe9.js"] = b"built some other way"
    bad, bad_integrity = tarball(tmp_path / "bad", files, link="/etc/passwd" if problem == "symlink" else None)
    if problem == "integrity":
        bad_integrity = integrity

    with pytest.raises(PackageError):
        prepare(bad, target, integrity=bad_integrity, version="2")

    assert json.loads((target / MARKER).read_text())["version"] == "1"
    assert sorted(p.name for p in target.parent.iterdir()) == ["viewer"]
    assert not (tmp_path / "escaped.js").exists()


def test_the_configuration_reads_our_dicomweb_and_signs_in_through_identity() -> None:
    config = app_config(PUBLIC_URL + "/")
    [source] = config["dataSources"]
    assert config["defaultDataSourceName"] == source["sourceName"]
    assert {source["configuration"][k] for k in ("qidoRoot", "wadoRoot")} == {f"{PUBLIC_URL}/dicomweb"}
    assert source["configuration"]["wadoUriRoot"] == f"{PUBLIC_URL}/dicomweb/wado"
    [oidc] = config["oidc"]
    assert oidc["authority"] == PUBLIC_URL and oidc["client_id"] == "ohif" and oidc["response_type"] == "code"
    assert oidc["redirect_uri"] == f"{PUBLIC_URL}/viewer/callback"  # registered by identity (config_oidc.py)
    assert study_url(PUBLIC_URL, "1.2.3") == f"{PUBLIC_URL}/viewer/viewer?StudyInstanceUIDs=1.2.3"


@pytest_asyncio.fixture
async def gateway(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    viewer = tmp_path / "ohif" / "viewer"
    if getattr(request, "param", "installed") == "installed":
        package, integrity = tarball(tmp_path, PACKAGE)
        prepare(package, viewer, integrity=integrity, version="3.13.2")
    bus = LocalBus(tmp_path / "bus.db")
    await bus.connect()
    service = build(CommonSettings(data_dir=tmp_path, public_url=PUBLIC_URL), bus, embedded=True,
                    settings=GatewaySettings(viewer_dir=viewer))
    client = TestClient(TestServer(service.app))
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
        for stop in service.on_stop:
            await stop()
        await bus.close()


async def test_the_page_needs_no_token_and_allows_exactly_its_own_inline_scripts(gateway: TestClient) -> None:  # type: ignore[type-arg]
    response = await gateway.get("/viewer/")
    page = await response.text()

    assert response.status == 200 and response.content_type == "text/html"
    policy = response.headers["Content-Security-Policy"]
    inline = re.findall(r"<script>(.*?)</script>", page)
    assert len(inline) == 2
    for script in inline:
        assert f"'sha256-{base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()}'" in policy
    assert "'unsafe-inline'" not in policy.split("script-src", 1)[1].split(";", 1)[0]
    assert "frame-ancestors 'self'" in policy and response.headers["X-Frame-Options"] == "SAMEORIGIN"
    assert response.headers["Cache-Control"] == "no-cache"
    again = await gateway.get("/viewer/", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
    assert (await gateway.get("/api/worklist")).status == 401  # the rest of the gateway still wants a token


async def test_routes_of_the_app_get_the_page_and_missing_files_are_404(gateway: TestClient) -> None:  # type: ignore[type-arg]
    for path in ("/viewer/viewer?StudyInstanceUIDs=1.2.3", "/viewer/callback?code=x&state=y",
                 "/viewer/logout-redirect.html"):
        response = await gateway.get(path)
        assert response.status == 200 and 'window.PUBLIC_URL="/viewer/"' in await response.text(), path
    for path in ("/viewer/missing.bundle.js", "/viewer/.telerad-viewer.json", "/viewer/app.bundle.css.gz",
                 "/viewer/sw.js"):
        response = await gateway.get(path)
        assert response.status in (404, 200), path
        assert response.status == 404 or "PUBLIC_URL" in await response.text(), path
    files = gateway.app[files_key]
    assert files.file("app.bundle.css") is not None
    assert files.file("../viewer/app.bundle.css") is None and files.file("../../bus.db") is None
    redirect = await gateway.get("/viewer", allow_redirects=False)
    assert redirect.status == 301 and redirect.headers["Location"] == "/viewer/"


async def test_files_carry_their_type_and_hashed_ones_are_cached_for_good(gateway: TestClient) -> None:  # type: ignore[type-arg]
    bundle = await gateway.get("/viewer/app.bundle.0f6159c501addfe9.js", headers={"Accept-Encoding": "gzip"})
    assert bundle.content_type == "text/javascript" and bundle.headers["Content-Encoding"] == "gzip"
    assert "immutable" in bundle.headers["Cache-Control"]
    assert '__webpack_require__.p = "/viewer/"' in await bundle.text()
    wasm = await gateway.get("/viewer/5130ccb17e3f3f5b.wasm")
    assert wasm.content_type == "application/wasm" and "immutable" in wasm.headers["Cache-Control"]
    css = await gateway.get("/viewer/app.bundle.css")
    assert css.content_type == "text/css" and css.headers["Cache-Control"] == "no-cache"
    assert "Cross-Origin-Embedder-Policy" in css.headers

    config = await gateway.get("/viewer/app-config.js")
    text = await config.text()
    assert config.content_type == "text/javascript" and text.startswith("window.config = ")
    assert json.loads(text.removeprefix("window.config = ").rstrip().rstrip(";")) == app_config(PUBLIC_URL)


@pytest.mark.parametrize("gateway", ["missing"], indirect=True)
async def test_without_make_viewer_the_viewer_answers_503(gateway: TestClient) -> None:  # type: ignore[type-arg]
    response = await gateway.get("/viewer/")
    assert response.status == 503 and "make viewer" in (await response.json())["detail"]
