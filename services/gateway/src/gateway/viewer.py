"""The OHIF viewer at ``/viewer/``: the prebuilt ``@ohif/app`` from npm, and an ``app-config.js`` of ours.

``make viewer`` downloads the pinned package and runs ``python -m gateway.viewer prepare``, which checks its
integrity, unpacks its ``dist/`` and moves its public path from ``/`` (how it is built) to ``/viewer/``. The
gateway serves those files (no node at run time) with an SPA fallback to ``index.html``, and generates the
configuration: DICOMweb at our ``/dicomweb``, signing in through identity's OpenID Connect provider as the
public client ``ohif`` (code flow with PKCE), the access token sent as a Bearer token.
"""

from __future__ import annotations

import argparse
import base64
import gzip
import hashlib
import json
import logging
import re
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from aiohttp import web

from gateway.domain import VIEWER_PATH
from radcommon.problems import NotFound, ServiceUnavailable

log = logging.getLogger(__name__)
PREFIX = VIEWER_PATH + "/"
#: Written last by :func:`prepare`: which package the folder holds. Without it the folder is not served.
MARKER = ".telerad-viewer.json"
#: Hosting files of other servers, OHIF's sample configurations, its service worker (no offline copies of a
#: viewer of patient data) and source maps: left out.
_LEFT_OUT = {"_headers", "_redirects", "serve.json", "app-config.js", "google.js", "sw.js", "init-service-worker.js"}
_COMPRESSED = {".js", ".css", ".wasm", ".json", ".jsonc", ".svg", ".html", ".xml", ".txt"}
CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8", ".mjs": "text/javascript",
    ".css": "text/css; charset=utf-8", ".wasm": "application/wasm", ".json": "application/json",
    ".jsonc": "application/json", ".webmanifest": "application/manifest+json", ".svg": "image/svg+xml",
    ".png": "image/png", ".ico": "image/x-icon", ".woff2": "font/woff2", ".woff": "font/woff",
    ".xml": "application/xml", ".txt": "text/plain; charset=utf-8", ".onnx": "application/octet-stream",
}
#: Names with a content hash never change: cached for a year. Everything else is revalidated (ETag).
_HASHED = re.compile(r"(^|\.)[0-9a-f]{16,}\.(js|css|wasm|woff2?)$")
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


# --- preparing a downloaded package ----------------------------------------------------------------------------------

class PackageError(ValueError):
    """The tarball is not the pinned package, or not laid out the way this module knows."""


def check_integrity(tarball: Path, integrity: str) -> None:
    """``integrity`` as npm's registry gives it (``dist.integrity``, Subresource Integrity: ``sha512-<base64>``)."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512" or not expected:
        raise PackageError(f"integrity must be sha512-<base64>, not {integrity!r}")
    digest = hashlib.sha512()
    with tarball.open("rb") as file:
        while chunk := file.read(1 << 20):
            digest.update(chunk)
    if base64.b64encode(digest.digest()).decode() != expected:
        raise PackageError(f"{tarball} does not match {integrity}: not the pinned @ohif/app, or a broken download")


def prepare(tarball: Path, target: Path, *, integrity: str, version: str) -> None:
    """Check ``tarball``, unpack its ``package/dist`` into ``target`` with the public path moved to ``/viewer/``.

    Built beside ``target`` and swapped in whole: a failure leaves the previous folder (or none) as it was.
    """
    check_integrity(tarball, integrity)
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        _unpack(tarball, staging)
        _move_public_path(staging)
        (staging / MARKER).write_text(json.dumps({"package": "@ohif/app", "version": version, "integrity": integrity,
                                                  "public_path": PREFIX}))
        old = target.with_name(f".{target.name}-old") if target.exists() else None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
        staging.rename(target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _unpack(tarball: Path, into: Path) -> None:
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive:
            name = PurePosixPath(member.name)
            if name.is_absolute() or ".." in name.parts:
                raise PackageError(f"the package names a path outside itself: {member.name!r}")
            if name.parts[:2] != ("package", "dist") or len(name.parts) < 3 or member.isdir():
                continue
            relative = PurePosixPath(*name.parts[2:])
            if not member.isfile():
                raise PackageError(f"the package holds something other than files: {member.name!r}")
            if relative.name in _LEFT_OUT or relative.suffix == ".map":
                continue
            path = into.joinpath(*relative.parts)
            path.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file
            with source, path.open("wb") as file:
                shutil.copyfileobj(source, file)
    if not (into / "index.html").is_file():
        raise PackageError("the package has no dist/index.html: not a built @ohif/app")


_PUBLIC_URL = 'window.PUBLIC_URL="/"'
_WEBPACK_PUBLIC_PATH = '__webpack_require__.p = "/";'
_SERVICE_WORKER = re.compile(r'<script[^>]*src="/init-service-worker\.js"[^>]*></script>')
_ROOTED_ATTRIBUTE = re.compile(r'\b(src|href|content)="/(?!/)')
_ROOTED_CSS_URL = re.compile(r"""url\((['"]?)/(?!/)""")


def _move_public_path(root: Path) -> None:
    """OHIF is built for ``/``: its page, its webpack runtimes, its style sheets and manifest name files from there."""
    index = (root / "index.html").read_text(encoding="utf-8")
    if _PUBLIC_URL not in index:
        raise PackageError("index.html does not set window.PUBLIC_URL as this module expects")
    index = _SERVICE_WORKER.sub("", index.replace(_PUBLIC_URL, f'window.PUBLIC_URL="{PREFIX}"'))
    (root / "index.html").write_text(_ROOTED_ATTRIBUTE.sub(rf'\1="{PREFIX}', index), encoding="utf-8")
    runtimes = 0
    for path in sorted(root.rglob("*")):
        if path.suffix == ".js":
            text = path.read_text(encoding="utf-8", errors="surrogateescape")
            if _WEBPACK_PUBLIC_PATH in text:
                runtimes += 1
                path.write_text(text.replace(_WEBPACK_PUBLIC_PATH, f'__webpack_require__.p = "{PREFIX}";'),
                                encoding="utf-8", errors="surrogateescape")
        elif path.suffix == ".css":
            path.write_text(_ROOTED_CSS_URL.sub(rf"url(\1{PREFIX}", path.read_text(encoding="utf-8")), encoding="utf-8")
        elif path.name == "manifest.json":
            path.write_text(json.dumps(_rooted(json.loads(path.read_text(encoding="utf-8")))), encoding="utf-8")
    if not runtimes:
        raise PackageError(f"no script sets the webpack public path ({_WEBPACK_PUBLIC_PATH!r})")
    for path in sorted(root.rglob("*")):  # served instead when the browser accepts gzip (aiohttp's FileResponse)
        if path.suffix in _COMPRESSED and path.name != "index.html" and path.stat().st_size > 1024:
            path.with_name(path.name + ".gz").write_bytes(gzip.compress(path.read_bytes(), 6, mtime=0))


def _rooted(value: Any) -> Any:
    if isinstance(value, str) and value.startswith("/") and not value.startswith("//"):
        return PREFIX + value[1:]
    if isinstance(value, dict):
        return {key: _rooted(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_rooted(item) for item in value]
    return value


# --- serving it ------------------------------------------------------------------------------------------------------

def app_config(public_url: str, client_id: str = "ohif") -> dict[str, Any]:
    """OHIF's ``window.config`` (the keys of @ohif/app 3.13: ``platform/app/public/config/default.js``)."""
    base = public_url.rstrip("/")
    dicomweb = f"{base}/dicomweb"
    return {
        "routerBasename": VIEWER_PATH,
        "showStudyList": True,
        "extensions": [],
        "modes": [],
        "customizationService": {},
        "maxNumberOfWebWorkers": 3,
        "showWarningMessageForCrossOrigin": False,
        "showCPUFallbackMessage": True,
        "showLoadingIndicator": True,
        "strictZSpacingForVolumeViewport": True,
        "investigationalUseDialog": {"option": "never"},
        "defaultDataSourceName": "dicomweb",
        "dataSources": [{
            "namespace": "@ohif/extension-default.dataSourcesModule.dicomweb",
            "sourceName": "dicomweb",
            "configuration": {
                "friendlyName": "Telerad", "name": "telerad",
                "qidoRoot": dicomweb, "wadoRoot": dicomweb, "wadoUriRoot": f"{dicomweb}/wado",
                "qidoSupportsIncludeField": True, "imageRendering": "wadors", "thumbnailRendering": "wadors",
                "enableStudyLazyLoad": True, "supportsFuzzyMatching": False, "supportsWildcard": True,
                "staticWado": False, "singlepart": "", "bulkDataURI": {"enabled": True},
                "omitQuotationForMultipartRequest": True,
            },
        }],
        "oidc": [{
            "authority": base, "client_id": client_id, "response_type": "code", "scope": "openid email profile",
            "redirect_uri": f"{base}{PREFIX}callback",
            "post_logout_redirect_uri": f"{base}{PREFIX}logout-redirect.html",
            "automaticSilentRenew": True,
            "revokeAccessTokenOnSignout": False,  # identity has no revocation endpoint; sign-out ends the session
        }],
    }


def study_url(public_url: str, study_instance_uid: str) -> str:
    """Where the viewer opens one study (OHIF's basic viewer mode)."""
    return f"{public_url.rstrip('/')}{PREFIX}viewer?StudyInstanceUIDs={study_instance_uid}"


_INLINE_SCRIPT = re.compile(r"<script>(.*?)</script>", re.DOTALL)


@dataclass(frozen=True)
class ViewerFiles:
    """A prepared folder, its page and the headers its responses carry."""

    root: Path
    version: str
    index: bytes
    config: bytes
    headers: dict[str, str]

    @classmethod
    def load(cls, root: Path, public_url: str) -> ViewerFiles | None:
        try:
            marker = json.loads((root / MARKER).read_text())
            index = (root / "index.html").read_text(encoding="utf-8")
        except (OSError, ValueError):
            return None
        hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                          for s in _INLINE_SCRIPT.findall(index))
        parts = urlsplit(public_url)
        authority = f"{parts.scheme}://{parts.netloc}"
        policy = ("default-src 'self'; "
                  # its own scripts and the page's two inline ones; the image codecs are WebAssembly
                  f"script-src 'self' {hashes} 'wasm-unsafe-eval'; "
                  "style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; font-src 'self' data:; "
                  f"connect-src 'self' {authority} data: blob:; worker-src 'self' blob:; "
                  # the silent-renew page is framed by the viewer itself; nobody else may frame it
                  "frame-src 'self'; frame-ancestors 'self'; "
                  f"object-src 'none'; base-uri 'self'; form-action 'self' {authority}; manifest-src 'self'")
        config = f"window.config = {json.dumps(app_config(public_url), indent=2)};\n"
        return cls(root.resolve(), str(marker.get("version", "")), index.encode(), config.encode(), {
            "Content-Security-Policy": policy,
            "X-Frame-Options": "SAMEORIGIN",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Embedder-Policy": "require-corp",  # cross-origin isolated: SharedArrayBuffer for volumes
            "Referrer-Policy": "no-referrer",
            "X-Content-Type-Options": "nosniff",
        })

    def file(self, relative: str) -> Path | None:
        parts = PurePosixPath(relative).parts
        if any(part.startswith(".") for part in parts) or relative.endswith(".gz"):
            return None
        path = self.root.joinpath(*parts).resolve()
        return path if path.is_relative_to(self.root) and path.is_file() else None


files_key = web.AppKey("viewer_files", ViewerFiles)


def add_viewer_routes(app: web.Application, root: Path, public_url: str) -> None:
    """``GET /viewer/...``: public (the app signs in before it reads anything), after the gateway's own routes."""
    if (files := ViewerFiles.load(root, public_url)) is not None:
        app[files_key] = files
        log.info("serving OHIF %s from %s at %s", files.version, files.root, PREFIX)
    else:
        log.warning("the viewer is not installed in %s: run `make viewer`; %s answers 503", root, PREFIX)
    app.router.add_get(VIEWER_PATH, _to_folder)
    app.router.add_get(PREFIX + "{path:.*}", serve)


async def _to_folder(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently(PREFIX + (f"?{request.query_string}" if request.query_string else ""))


async def serve(request: web.Request) -> web.StreamResponse:
    files = request.app.get(files_key)
    if files is None:
        raise ServiceUnavailable("the viewer is not installed on this server (make viewer)")
    relative = request.match_info["path"]
    if relative == "app-config.js":
        return _page(request, files, files.config, CONTENT_TYPES[".js"])
    path = None if relative in ("", "index.html") else files.file(relative)
    if path is None:
        if PurePosixPath(relative).suffix in CONTENT_TYPES.keys() - {".html"}:
            raise NotFound(f"the viewer has no {relative}")
        return _page(request, files, files.index, CONTENT_TYPES[".html"])  # a route of the app: it draws it
    headers = {**files.headers, "Cache-Control": IMMUTABLE if _HASHED.search(path.name) else REVALIDATE}
    if content_type := CONTENT_TYPES.get(path.suffix):
        headers["Content-Type"] = content_type
    return web.FileResponse(path, headers=headers)


def _page(request: web.Request, files: ViewerFiles, body: bytes, content_type: str) -> web.Response:
    etag = f'"{hashlib.sha256(body).hexdigest()[:32]}"'
    headers = {**files.headers, "Cache-Control": REVALIDATE, "ETag": etag}
    if etag in (tag.strip() for tag in request.headers.get("If-None-Match", "").split(",")):
        return web.Response(status=304, headers=headers)
    return web.Response(body=body, headers={**headers, "Content-Type": content_type})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.viewer", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    command = commands.add_parser("prepare", help="check and unpack a downloaded @ohif/app for /viewer/")
    command.add_argument("tarball", type=Path)
    command.add_argument("target", type=Path)
    command.add_argument("--integrity", required=True, help="the registry's dist.integrity (sha512-...)")
    command.add_argument("--version", required=True)
    args = parser.parse_args(argv)
    try:
        prepare(args.tarball, args.target, integrity=args.integrity, version=args.version)
    except (PackageError, OSError, tarfile.TarError) as error:
        print(f"viewer: {error}", file=sys.stderr)
        return 1
    print(f"viewer: @ohif/app {args.version} ready in {args.target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
