# The braid binary and the demo config, for docker-compose.yml.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --bin braid

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/braid /usr/local/bin/braid
COPY braid.toml /etc/braid/braid.toml
ENV BRAID_CONFIG=/etc/braid/braid.toml
ENTRYPOINT ["braid"]
