# syntax=docker/dockerfile:1
# The weir cef_alerts worker (examples/cef_alerts.rs) as a container image:
#
#   docker build -t weir/cef-alerts:0.1.0 .
#
# Configured by environment variables (every flag --foo-bar is also
# WEIR_FOO_BAR; ops/k8s/configmap.yaml lists those the manifests set) and
# by flags after the image name, e.g. --kafka-option KEY=VALUE.

# ---- build ------------------------------------------------------------------
# The Rust image has the C and C++ toolchain that RocksDB and librdkafka
# build with; RocksDB's bindings also need libclang, and librdkafka's TLS
# and gzip the OpenSSL and zlib headers (as ops/setup.sh installs on a
# developer machine).
FROM rust:1.95-bookworm AS build
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libclang-dev libssl-dev zlib1g-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The release profile keeps line tables for profiling; the image drops the
# debug info (function names stay, so backtraces remain readable).
ENV CARGO_PROFILE_RELEASE_STRIP=debuginfo
# The caches keep the registry and the compiled dependencies (RocksDB takes
# minutes) between builds; the binary is copied out of the cached target.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --example cef_alerts \
 && cp target/release/examples/cef_alerts /usr/local/bin/cef_alerts

# ---- run --------------------------------------------------------------------
# Same Debian release as the build stage, so the glibc, libstdc++, OpenSSL
# and zlib the binary links against are there (ca-certificates: the CAs
# librdkafka verifies brokers against when no ssl.ca.location is given).
FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ca-certificates libstdc++6 libssl3 zlib1g \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 weir \
 && useradd --system --uid 10001 --gid weir --home-dir /var/lib/weir --no-create-home \
      --shell /usr/sbin/nologin weir \
 && install -d -o weir -g weir -m 0750 /var/lib/weir
COPY --from=build /usr/local/bin/cef_alerts /usr/local/bin/cef_alerts
# A numeric user, so that Kubernetes' runAsNonRoot can verify it.
USER 10001:10001
# RocksDB state (a cache of the checkpoint store: mount a volume here) and
# the admin server (/metrics, /healthz, /readyz).
ENV WEIR_STATE_DIR=/var/lib/weir \
    WEIR_ADMIN_ADDR=0.0.0.0:9898
EXPOSE 9898
# The worker is PID 1 and handles SIGTERM itself: final checkpoints, offset
# commits, leave the group, exit 0.
ENTRYPOINT ["/usr/local/bin/cef_alerts"]
