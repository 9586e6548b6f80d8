#!/usr/bin/env python3
"""The original design's pipeline, written the way its sample code is: boto3,
one call per record. The baseline pipehost is measured against (BENCHMARKS.md).

    reference_boto3.py ENDPOINT --lines FILE --name PREFIX [--shards 4]

FILE has one JSON object per line: {"feed": ..., "key": ..., "data": ...} —
the records pipehost carried, so both see the same input. The script creates
its own stream, queue, bucket and topic (names from PREFIX), then, timed:

  1. web server: `put_record` once per record (the sample's `/logs` route);
  2. "SQS polls Kinesis": per shard, `get_records` until drained, and one
     `send_message` per record;
  3. the processing Lambda: `receive_message` (10 at a time, as an event
     source mapping's default batch), parse each body (forex JSON, stock CSV,
     news key=value — the same fields pipehost's plugins read), one
     `put_object` per received batch (JSON Lines), one SNS `publish` per
     object, and one `delete_message` per message.

The stages run one after another in one thread, as the sample would in one
process; the work per record is what the design does. Prints one JSON line
with the counts and the seconds each stage took.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import shlex
import sys
import time

import boto3
from botocore.config import Config


def parse(feed: str, line: str) -> dict | None:
    try:
        if feed == "forex":
            q = json.loads(line)
            return {"pair": q["pair"], "bid": float(q["bid"]), "ask": float(q["ask"]), "ts": q["ts"]}
        if feed == "stock":
            row = next(csv.reader(io.StringIO(line)))
            return {"symbol": row[1], "price": float(row[2]), "size": int(row[3]), "ts": row[0]}
        if feed == "news":
            fields = dict(p.split("=", 1) for p in shlex.split(line) if "=" in p)
            return {"id": fields.get("id"), "headline": fields.get("headline"), "ts": fields.get("ts")}
    except Exception:
        return None
    return None


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("endpoint")
    ap.add_argument("--lines", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--shards", type=int, default=4)
    args = ap.parse_args()

    records = [json.loads(l) for l in open(args.lines) if l.strip()]
    cfg = Config(region_name="us-east-1", retries={"max_attempts": 10, "mode": "standard"})
    kw = dict(endpoint_url=args.endpoint, config=cfg,
              aws_access_key_id="testing", aws_secret_access_key="testing")
    kinesis = boto3.client("kinesis", **kw)
    sqs = boto3.client("sqs", **kw)
    s3 = boto3.client("s3", **kw)
    sns = boto3.client("sns", **kw)

    stream, queue, bucket = f"{args.name}-stream", f"{args.name}-queue", f"{args.name}-bucket"
    kinesis.create_stream(StreamName=stream, ShardCount=args.shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream)
    url = sqs.create_queue(QueueName=queue)["QueueUrl"]
    s3.create_bucket(Bucket=bucket)
    topic = sns.create_topic(Name=f"{args.name}-topic")["TopicArn"]

    t0 = time.monotonic()
    for r in records:
        kinesis.put_record(StreamName=stream, Data=r["data"].encode(), PartitionKey=f'{r["feed"]}:{r["key"]}')
    t1 = time.monotonic()

    moved = 0
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"],
                                        ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            out = kinesis.get_records(ShardIterator=it, Limit=1000)
            for rec in out["Records"]:
                body = json.dumps({"key": rec["PartitionKey"], "data": rec["Data"].decode()})
                sqs.send_message(QueueUrl=url, MessageBody=body)
                moved += 1
            if not out["Records"] and out.get("MillisBehindLatest", 0) == 0:
                break
            it = out.get("NextShardIterator")
    t2 = time.monotonic()

    processed = objects = failed = 0
    empty = 0
    while empty < 2:
        msgs = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0).get("Messages", [])
        if not msgs:
            empty += 1
            continue
        empty = 0
        lines = []
        for m in msgs:
            body = json.loads(m["Body"])
            feed = body["key"].split(":", 1)[0]
            event = parse(feed, body["data"])
            if event is None:
                failed += 1
            else:
                lines.append(json.dumps({"dataset": feed, **event}))
            processed += 1
        key = f"processed/{msgs[0]['MessageId']}.json"
        s3.put_object(Bucket=bucket, Key=key, Body="\n".join(lines).encode())
        sns.publish(TopicArn=topic, Message=json.dumps({"bucket": bucket, "key": key}))
        objects += 1
        for m in msgs:
            sqs.delete_message(QueueUrl=url, ReceiptHandle=m["ReceiptHandle"])
    t3 = time.monotonic()

    print(json.dumps({
        "records": len(records), "moved": moved, "processed": processed, "unparsed": failed,
        "objects": objects, "put_s": t1 - t0, "bridge_s": t2 - t1, "process_s": t3 - t2,
        "total_s": t3 - t0,
    }))
    return 0 if processed == len(records) else 1


if __name__ == "__main__":
    sys.exit(main())
