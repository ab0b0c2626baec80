"""Freshness: produce one event at a time and time until GET /v1/views/page_views shows it.

Each probe is a page view of a page no other event has (/probe/<run>/<n>) with the wall clock
as its event time, written to a long-running kcat producer (linger 0); the clock starts when
the line is flushed to kcat and stops when the API's answer first counts the event (polled
every 5 ms). Prints p50, p99 and max in milliseconds.

usage: freshness.py BROKERS TOPIC API_ADDRESS PROBES
"""

import datetime
import json
import subprocess
import sys
import time
import urllib.request

brokers, topic, api, probes = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
run = int(time.time())
producer = subprocess.Popen(
    ["kcat", "-P", "-b", brokers, "-t", topic, "-X", "linger.ms=0", "-X", "acks=all"],
    stdin=subprocess.PIPE,
    text=True,
)


def visible(page, start, end):
    query = f"from={start}&to={end}&filter.page={page}"
    with urllib.request.urlopen(f"http://{api}/v1/views/page_views?{query}", timeout=5) as answer:
        rows = json.load(answer)["rows"]
    return bool(rows) and rows[0]["count"] == 1


def utc(t):
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


latencies = []
for n in range(probes):
    now = datetime.datetime.now(datetime.timezone.utc)
    page = f"/probe/{run}/{n}"
    event = {
        "event_id": f"probe-{run}-{n}", "ts": now.isoformat().replace("+00:00", "Z"),
        "event_type": "page_view", "user_id": "probe", "page": page, "country": "DE",
        "device": "web", "duration_ms": 1,
    }
    start = utc(now - datetime.timedelta(minutes=2))
    end = utc(now + datetime.timedelta(minutes=2))
    producer.stdin.write(json.dumps(event) + "\n")
    producer.stdin.flush()
    sent = time.monotonic()
    while not visible(page, start, end):
        if time.monotonic() - sent > 30:
            sys.exit(f"probe {n} not visible after 30 s")
        time.sleep(0.005)
    latencies.append((time.monotonic() - sent) * 1000)
producer.stdin.close()
producer.wait()
latencies.sort()
pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]
print(f"freshness, produce to visible in the API ({probes} probes): "
      f"p50 {pick(0.50):.0f} ms, p99 {pick(0.99):.0f} ms, max {latencies[-1]:.0f} ms")
