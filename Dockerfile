# syntax=docker/dockerfile:1
# scalelab: one image with the static host and every guest.
#
#   docker build -t scalelab:dev .
#   docker run --rm -p 8080:8080 -p 9090:9090 scalelab:dev          # serves prime
#   docker run --rm scalelab:dev serve --guest broker               # another guest
#
# The build stage runs `cargo xtask image --layout-only`, the same command
# that lays the image out as a directory on machines without Docker; the final
# stage copies that directory into an empty image. What the image holds is
# listed once, in xtask/src/image.rs.

FROM rust:1.95-slim-bookworm AS build
# musl-tools: C parts of wasmtime for the static x86_64-unknown-linux-musl host.
RUN apt-get update \
    && apt-get install -y --no-install-recommends musl-tools=1.2.3-1 \
    && rm -rf /var/lib/apt/lists/*
RUN rustup target add x86_64-unknown-linux-musl wasm32-wasip2
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo xtask image --layout-only --out /layout

# No shell, no libc, no package manager: the host, the guests, a passwd entry
# for the non-root user, an empty /tmp for the compile cache and an empty
# /var/lib/scalelab for embedded SQLite files (a volume in Kubernetes).
FROM scratch
COPY --from=build /layout/ /
ENV SCALELAB_DATA_DIR=/var/lib/scalelab
USER 65532:65532
EXPOSE 8080 9090 1337
# The guest comes from /etc/scalelab/guest.toml (the image's default serves
# prime; Kubernetes mounts the guest ConfigMap there).
ENTRYPOINT ["/opt/scalelab/bin/scalelab"]
CMD ["serve"]
