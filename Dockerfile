# The braid binary and the demo config, for docker-compose.yml. The `spark` target adds Spark
# (pyspark and delta-spark from PyPI, Java 17) for batch.engine = "spark" in local mode.
FROM rust:1.95-bookworm AS build
WORKDIR /src
# Node.js and npm install the console's packages (uPlot) so that build.rs embeds the console.
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm && rm -rf /var/lib/apt/lists/*
COPY . .
RUN BRAID_CONSOLE=required cargo build --release --bin braid

FROM debian:bookworm-slim AS braid
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/braid /usr/local/bin/braid
COPY braid.toml /etc/braid/braid.toml
ENV BRAID_CONFIG=/etc/braid/braid.toml
ENTRYPOINT ["braid"]

FROM braid AS spark
RUN apt-get update && apt-get install -y --no-install-recommends openjdk-17-jre-headless python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/spark-venv \
    && /opt/spark-venv/bin/pip install --no-cache-dir pyspark==4.2.0 delta-spark==4.4.0
ENV PATH=/opt/spark-venv/bin:$PATH PYSPARK_PYTHON=/opt/spark-venv/bin/python
