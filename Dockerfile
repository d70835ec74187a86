# syntax=docker/dockerfile:1
# Pulltrace's one container image: pulltrace-server and pulltrace-agent (the chart runs both
# from it, choosing the daemon with `command`). Built here by scripts/images.sh (buildah, no
# Docker engine) and by the release workflow (buildx, linux/amd64 and linux/arm64); see
# docs/images.md.
#
#   ui       the web UI (vite). Debian trixie: its Node.js 20.19 is what vite 8 needs, and
#            bookworm's Node.js 18 cannot run it. The output is plain files, so this stage
#            runs once, on the build machine's platform, whatever the target platform is.
#   build    both daemons, compiled on bookworm, with the UI embedded in the server.
#   runtime  bookworm-slim with only the shared libraries the daemons link, running as
#            uid 65532 by default.

ARG VERSION=0.1.0
ARG REVISION=unknown
ARG SOURCE=https://github.com/pulltrace/pulltrace

FROM --platform=$BUILDPLATFORM debian:trixie AS ui
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src/ui
COPY ui/package.json ui/package-lock.json ./
# A machine whose HTTPS goes through an inspecting proxy passes its CA bundle as the build
# secret `ca-certificates` (scripts/images.sh does); it never ends up in a layer.
RUN --mount=type=secret,id=ca-certificates \
    if [ -s /run/secrets/ca-certificates ]; then \
      export NODE_EXTRA_CA_CERTS=/run/secrets/ca-certificates; \
    fi \
 && npm ci --no-audit --no-fund
COPY ui/ ./
RUN npm run build -- --outDir /ui-dist --emptyOutDir --logLevel warn

FROM debian:bookworm AS build
COPY scripts/install-deps.sh /tmp/install-deps.sh
RUN bash /tmp/install-deps.sh build
COPY . /src
COPY --from=ui /ui-dist /ui-dist
ARG VERSION
RUN cmake -S /src -B /build -DCMAKE_BUILD_TYPE=Release -DPT_BUILD_TESTS=OFF \
          -DPT_BUILD_UI=ON -DPT_UI_DIST=/ui-dist \
 && cmake --build /build -j "$(nproc)" --target pulltrace-agent pulltrace-server \
 && cmake --install /build --strip --prefix /out/usr/local \
 && /out/usr/local/bin/pulltrace-server --version | grep -qx "pulltrace-server $VERSION" \
 || { echo "build: failed, or the project's version is not VERSION=$VERSION" >&2; exit 1; }

FROM debian:bookworm-slim AS runtime
ARG VERSION
ARG REVISION
ARG SOURCE
LABEL org.opencontainers.image.title="pulltrace" \
      org.opencontainers.image.description="Live container image pull progress per node, layer and pod, for Kubernetes clusters running containerd (pulltrace-server and pulltrace-agent)." \
      org.opencontainers.image.source="$SOURCE" \
      org.opencontainers.image.url="$SOURCE" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.licenses="Apache-2.0"
# The shared libraries the daemons link, ca-certificates (HTTPS webhooks and reports) and
# curl (the chart's `helm test` pod runs it); the last step fails the build when a daemon
# needs a library that is not listed here.
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
      ca-certificates curl libcurl4 libgrpc29 libjansson4 liblua5.4-0 libprotobuf-c1 libssl3 libuv1 \
      libsimdjson14 libsqlite3-0 liburing2 libyaml-0-2 lua-cjson \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* /var/log/apt /var/log/dpkg.log \
 && useradd --uid 65532 --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pulltrace
COPY --from=build /out/ /
COPY LICENSE /usr/share/doc/pulltrace/LICENSE
RUN for b in /usr/local/bin/pulltrace-server /usr/local/bin/pulltrace-agent; do \
      if ldd "$b" | grep 'not found'; then \
        echo "runtime: $b needs a library the runtime stage does not install" >&2; exit 1; \
      fi; \
      "$b" --version; \
    done
USER 65532:65532
EXPOSE 8080 9090
CMD ["pulltrace-server"]
