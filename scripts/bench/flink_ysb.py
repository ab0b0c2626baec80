"""The YSB query in Apache Flink (PyFlink's local mini-cluster), the peer of `braid speed`.

A tumbling 10 s count per ad of `view` events, read from a Braid topic (JSON, as `braid generate
--workload ysb` writes it) with event-time windows, written to a Kafka topic as JSON rows
{ad_id, window_start, window_end, view_count}; each row's Kafka timestamp is when Flink produced it.

  flink_ysb.py catchup --topic T --out OUT   read T from its start to its end offsets at job start
                                             (the job then ends by itself)
  flink_ysb.py live --topic T --out OUT --seconds S
                                             read T from its end, for S seconds, then cancel
  --sink blackhole                           the job alone: no checkpoints, rows discarded by
                                             Flink's blackhole connector (OUT unused); the
                                             default, --sink kafka, runs it as in production

Prints `flink: ...` lines: the phases' times and the mini-cluster JVM's peak resident memory.
Settings a user would choose for this job: parallelism = the machine's cores, checkpoints every
10 s (hashmap state, local directory), watermark = the event time (the stream is in order per
partition), at-least-once Kafka sink, session time zone UTC. `--sink blackhole` is the
benchmark-style job instead (what Flink's own throughput figures usually measure).
Needs FLINK_KAFKA_JAR (the flink-sql-connector-kafka jar) and KAFKA_BROKERS.
"""

import argparse
import os
import sys
import tempfile
import time

STARTED = time.time()


def jvm_peak_rss_mib():
    """Peak resident memory of this process's Java child (the PyFlink gateway running the
    mini-cluster), from /proc; None when it cannot be found."""
    me = str(os.getpid())
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/stat") as f:
                parent = f.read().rsplit(")", 1)[1].split()[1]
            if parent != me:
                continue
            with open(f"/proc/{pid}/status") as f:
                status = dict(line.split(":", 1) for line in f if ":" in line)
            if "java" in status.get("Name", ""):
                return int(status["VmHWM"].split()[0]) // 1024
        except (OSError, IndexError, KeyError, ValueError):
            continue
    return None


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["catchup", "live"])
    parser.add_argument("--topic", required=True, help="the topic of ad events")
    parser.add_argument("--out", required=True, help="the topic the window counts are written to")
    parser.add_argument("--seconds", type=float, default=60, help="live: how long to run")
    parser.add_argument("--events", type=int, help="catchup: the events in the topic, for the rates")
    parser.add_argument("--parallelism", type=int, default=os.cpu_count())
    parser.add_argument("--sink", choices=["kafka", "blackhole"], default="kafka",
                        help="kafka: checkpoints every 10 s, rows to OUT (production); "
                             "blackhole: no checkpoints, rows discarded (the job alone)")
    args = parser.parse_args()
    brokers = os.environ["KAFKA_BROKERS"]
    jar = os.environ["FLINK_KAFKA_JAR"]
    if not os.path.isfile(jar):
        sys.exit(f"FLINK_KAFKA_JAR: no file at {jar}")

    from pyflink.common import Configuration
    from pyflink.table import EnvironmentSettings, TableEnvironment

    config = Configuration()
    config.set_string("pipeline.jars", f"file://{jar}")
    config.set_string("parallelism.default", str(args.parallelism))
    config.set_string("table.local-time-zone", "UTC")
    config.set_string("state.backend.type", "hashmap")
    if args.sink == "kafka":
        config.set_string("execution.checkpointing.interval", "10 s")
        config.set_string("execution.checkpointing.dir", "file://" + tempfile.mkdtemp(prefix="braid-flink-checkpoints-"))
    settings = EnvironmentSettings.new_instance().in_streaming_mode().with_configuration(config).build()
    tables = TableEnvironment.create(settings)

    bounds = (
        "'scan.startup.mode' = 'earliest-offset', 'scan.bounded.mode' = 'latest-offset'"
        if args.mode == "catchup"
        else "'scan.startup.mode' = 'latest-offset'"
    )
    tables.execute_sql(f"""
        CREATE TABLE ad_events (
          user_id STRING, page_id STRING, ad_id STRING, ad_type STRING, event_type STRING,
          event_time TIMESTAMP_LTZ(3), ip_address STRING,
          WATERMARK FOR event_time AS event_time
        ) WITH (
          'connector' = 'kafka', 'topic' = '{args.topic}',
          'properties.bootstrap.servers' = '{brokers}',
          'properties.group.id' = 'bench.flink.{args.topic}.{args.mode}',
          {bounds},
          'format' = 'json', 'json.timestamp-format.standard' = 'ISO-8601',
          'json.ignore-parse-errors' = 'true'
        )""")
    sink = (
        f"""'connector' = 'kafka', 'topic' = '{args.out}',
          'properties.bootstrap.servers' = '{brokers}',
          'format' = 'json', 'json.timestamp-format.standard' = 'ISO-8601',
          'sink.delivery-guarantee' = 'at-least-once'"""
        if args.sink == "kafka"
        else "'connector' = 'blackhole'"
    )
    tables.execute_sql(f"""
        CREATE TABLE ad_windows (
          ad_id STRING, window_start TIMESTAMP(3), window_end TIMESTAMP(3), view_count BIGINT
        ) WITH ({sink})""")
    submitted = time.time()
    result = tables.execute_sql("""
        INSERT INTO ad_windows
        SELECT ad_id, window_start, window_end, COUNT(*) AS view_count
        FROM TABLE(TUMBLE(TABLE ad_events, DESCRIPTOR(event_time), INTERVAL '10' SECOND))
        WHERE event_type = 'view'
        GROUP BY ad_id, window_start, window_end""")
    client = result.get_job_client()
    deadline = time.time() + 120
    while True:
        try:
            status = str(client.get_job_status().result())
        except Exception:  # a short job ends, and its mini-cluster with it, before it is seen running
            status = "ENDED"
        if status != "CREATED" and status != "INITIALIZING":
            break
        if time.time() > deadline:
            sys.exit("flink: the job did not start in 120 s")
        time.sleep(0.05)
    running = time.time()
    print(f"flink: job running {running - STARTED:.2f} s after process start "
          f"({running - submitted:.2f} s after submission)", flush=True)
    if args.mode == "catchup":
        result.wait()
    else:
        try:
            result.wait(int(args.seconds * 1000))
        except Exception:  # the wait's timeout: the live run is over
            pass
        peak = jvm_peak_rss_mib()
        client.cancel().result()
    done = time.time()
    if args.mode == "catchup":
        peak = jvm_peak_rss_mib()
        print(f"flink: job finished {done - STARTED:.2f} s after process start, "
              f"{done - running:.2f} s after it was running", flush=True)
        if args.events:
            label = "flink on YSB" if args.sink == "kafka" else "flink on YSB, blackhole sink, no checkpoints"
            print(f"{label}: {args.events / (done - STARTED):,.0f} events/s from process start to finished "
                  f"({args.events / (done - running):,.0f} events/s from the job running)", flush=True)
    print(f"flink: mini-cluster JVM peak resident {peak} MiB", flush=True)


if __name__ == "__main__":
    main()
