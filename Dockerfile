# syntax=docker/dockerfile:1
# One image for every Telerad service: `docker run telerad serve <service>`.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The OHIF viewer the gateway serves at /viewer/ (the same pin as the Makefile's `viewer` target).
ARG OHIF_VERSION=3.13.2
ARG OHIF_INTEGRITY=sha512-WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA==

FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_INPUT=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY constraints.txt pyproject.toml ./
COPY libs/ libs/
COPY services/ services/
COPY src/ src/
# Every directory with a pyproject.toml under libs/ and services/, plus the root `telerad` package,
# installed as ordinary (non-editable) wheels so the runtime stage needs no source tree.
RUN --mount=type=cache,target=/root/.cache/pip \
    set -eu; \
    for dir in libs/* services/*; do \
        if [ -f "$dir/pyproject.toml" ]; then set -- "$@" "./$dir"; fi; \
    done; \
    pip install -c constraints.txt "$@" . \
    && pip check
# The prebuilt @ohif/app from the npm registry, checked against its integrity and prepared for /viewer/.
ARG OHIF_VERSION
ARG OHIF_INTEGRITY
RUN python -c "import sys, urllib.request; urllib.request.urlretrieve(sys.argv[1], '/tmp/ohif.tgz')" \
        "https://registry.npmjs.org/@ohif/app/-/app-${OHIF_VERSION}.tgz" \
    && python -m gateway.viewer prepare /tmp/ohif.tgz /opt/ohif/viewer --integrity "${OHIF_INTEGRITY}" \
        --version "${OHIF_VERSION}" \
    && rm /tmp/ohif.tgz

FROM ${PYTHON_IMAGE} AS runtime
# Bytecode was compiled at install time; the root filesystem is read-only in the cluster.
# /var/lib/telerad belongs to the image user so that a fresh named volume mounted there is writable.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TELERAD_DATA_DIR=/var/lib/telerad \
    GATEWAY_VIEWER_DIR=/opt/ohif/viewer
RUN groupadd --system --gid 10001 telerad \
    && useradd --system --uid 10001 --gid telerad --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin telerad \
    && mkdir -p /var/lib/telerad/dicom \
    && chown -R 10001:10001 /var/lib/telerad
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/ohif /opt/ohif
WORKDIR /var/lib/telerad
USER 10001:10001
# gateway HTTP, dicom-ingest HTTP and DICOM (DIMSE), worklist HTTP, identity HTTP
EXPOSE 8080 8081 11112 8082 8083 8084 8085
ENTRYPOINT ["telerad"]
CMD ["--help"]
