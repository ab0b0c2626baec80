"""Exactness of the YSB benchmark: views per (ad, 10 s window) folded over the generated stream
(stdin: `braid generate --workload ysb --stdout` with the benchmark's seed and count), against
  --campaigns FILE  Braid's API answer grouped by campaign_id (the dimension's rollup)
  --ads FILE        Braid's API answer grouped by ad_id
  --flink FILE      Flink's output rows (one JSON object per line: ad_id, window_start, view_count)
Prints one line per comparison and exits 1 if any row differs."""

import argparse
import datetime
import json
import sys
from collections import Counter


def epoch(text):
    text = text.replace("Z", "+00:00")
    instant = datetime.datetime.fromisoformat(text)
    if instant.tzinfo is None:  # Flink writes TIMESTAMP(3) in the session zone, UTC
        instant = instant.replace(tzinfo=datetime.timezone.utc)
    return int(instant.timestamp())


def campaign(ad):
    return "campaign-%03d" % (int(ad[3:]) // 10)


def compare(name, truth, got):
    wrong = [k for k in truth.keys() | got.keys() if truth[k] != got[k]]
    print(f"{name}: {len(got)} rows, {sum(got.values())} views; the fold: {len(truth)} rows, "
          f"{sum(truth.values())} views; differing rows: {len(wrong)}")
    return not wrong


def served(path, key):
    answer = json.load(open(path))
    assert not answer["truncated"], f"{path}: the answer was truncated; raise the limit"
    return Counter({(row[key], epoch(row["bucket_start"])): row["count"] for row in answer["rows"]})


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--campaigns")
    parser.add_argument("--ads")
    parser.add_argument("--flink")
    args = parser.parse_args()
    per_ad = Counter()
    for line in sys.stdin:
        event = json.loads(line)
        if event["event_type"] == "view":
            per_ad[(event["ad_id"], epoch(event["event_time"]) // 10 * 10)] += 1
    per_campaign = Counter()
    for (ad, window), count in per_ad.items():
        per_campaign[(campaign(ad), window)] += count
    ok = True
    if args.campaigns:
        ok &= compare("braid, (campaign, 10 s window) via the dimension", per_campaign, served(args.campaigns, "campaign_id"))
    if args.ads:
        ok &= compare("braid, (ad, 10 s window)", per_ad, served(args.ads, "ad_id"))
    if args.flink:
        flink = Counter()
        for line in open(args.flink):
            if line.strip():
                row = json.loads(line)
                flink[(row["ad_id"], epoch(row["window_start"]))] += row["view_count"]
        ok &= compare("flink, (ad, 10 s window)", per_ad, flink)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
