# syntax=docker/dockerfile:1
# Two images from one build of the `shanraq` binary:
#   docker build --target operator -t ghcr.io/shanraq-org/shanraq-operator:0.1.0 .
#   docker build --target postgres -t ghcr.io/shanraq-org/shanraq-postgres:15-0.1.0 .
# The operator image runs `shanraq operator`; the PostgreSQL image is the official PostgreSQL 15
# image with `shanraq instance postgres` (the instance manager) as its entrypoint.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-bookworm AS builder
WORKDIR /src
COPY . .
# The caches keep the registry and target/ between builds; the binary is copied out of the
# cache mount before the layer is committed.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p shanraq-operator --bin shanraq \
    && install -m 0755 target/release/shanraq /usr/local/bin/shanraq

# PostgreSQL pods. Same Debian release (bookworm) as the builder, so the binary's glibc matches.
FROM postgres:15-bookworm AS postgres
# pgBackRest: WAL archiving, backups and restores to the object store of spec.backup.
RUN apt-get update \
    && apt-get install -y --no-install-recommends pgbackrest ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY --from=builder /usr/local/bin/shanraq /usr/local/bin/shanraq
USER postgres
ENTRYPOINT ["shanraq", "instance", "postgres"]

# The operator: distroless (glibc, CA certificates, no shell), uid 65532. Last, so that a plain
# `docker build .` produces it.
FROM gcr.io/distroless/cc-debian12:nonroot AS operator
COPY --from=builder /usr/local/bin/shanraq /usr/local/bin/shanraq
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/shanraq"]
CMD ["operator"]
