# syntax=docker/dockerfile:1
# The `rein` binary in a small image: built with the `dist` profile (fat
# LTO, one codegen unit, stripped; see Cargo.toml), run as a non-root user
# on Debian bookworm-slim.
#
#   docker build -t rein .
#   docker run --rm rein --help
#   docker compose up          # PostgreSQL + 3 replicas + HAProxy (docker-compose.yml)
#
# The build takes long (fat LTO: about an hour on 2 cores); BuildKit's cache
# mounts keep the registry and the target folder between builds.

# The toolchain the project is built and tested with (its MSRV is 1.89).
ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=bookworm

FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --locked --profile dist -p rein-cli \
 && cp target/dist/rein /usr/local/bin/rein
# The dist profile strips already; this fails the build if it ever does not.
RUN if readelf -S /usr/local/bin/rein | grep -q '\.symtab'; then echo "rein is not stripped" >&2; exit 1; fi

FROM debian:${DEBIAN_RELEASE}-slim
# ca-certificates: TLS to PostgreSQL (sslmode=require) and JWKS URLs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --user-group --home-dir /var/lib/rein --create-home --shell /usr/sbin/nologin rein \
 && install -d -o rein -g rein -m 0700 /var/lib/rein/secrets
COPY --from=build /usr/local/bin/rein /usr/local/bin/rein
USER rein:rein
WORKDIR /var/lib/rein
EXPOSE 8700
# No curl in the image: bash's /dev/tcp asks /healthz (200 when the replica
# serves the published policy and its store answers, 503 otherwise). It
# assumes `--listen 0.0.0.0:8700` (or REIN_HEALTH_PORT).
HEALTHCHECK --interval=5s --timeout=3s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/${REIN_HEALTH_PORT:-8700} && printf 'GET /healthz HTTP/1.0\\r\\nHost: localhost\\r\\n\\r\\n' >&3 && head -n1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["rein"]
CMD ["--help"]
