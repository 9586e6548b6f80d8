#!/usr/bin/env python3
"""pipehost's benchmark report: runs every benchmark of BENCHMARKS.md side by
side on this machine and prints one table. Run through `./x bench`.

    tests/support/bench_report.py [--quick] [--debug] [--only SECTIONS]

SECTIONS (comma-separated; all by default):
  plugin   each shipped parser + transform chain, wasm in the real host vs the
           same Rust natively (cargo bench --bench plugin_path)
  e2e      sustained records/s of a saturating local pipeline, peak RSS
  latency  p50/p99 from a record's arrival on the stream to its object's
           notification, at an offered 10k records/s, peak RSS
  moto     pipehost (backend aws) vs the original design in boto3
           (reference_boto3.py) over the same records on one moto server
  scaling  the default pipeline at 1x, 4x and 16x its feed rate: records/s, RSS

--quick runs tiny sizes (a smoke test: the figures mean nothing); --debug uses
target/debug/pipehost (and the plugin benchmark through `cargo test`).
"""

from __future__ import annotations

import argparse
import bisect
import json
import os
import platform
import re
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGINS = ROOT / "target/wasm32-wasip2/release"


def note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def machine() -> str:
    model = "unknown CPU"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(open("/proc/meminfo").readline().split()[1])
        mem = f", {kb / 1048576:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{os.cpu_count()} cores, {model}{mem}, {platform.system()} {platform.release()}"


def run_measured(cmd: list[str], env: dict | None = None, cwd: Path | None = None) -> tuple[str, str, float, int]:
    """Runs cmd; returns stdout, stderr, wall seconds and the child's peak RSS (bytes)."""
    started = time.monotonic()
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, usage = os.wait4(p.pid, 0)
        p.returncode = os.waitstatus_to_exitcode(status)
        wall = time.monotonic() - started
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, cmd))} failed ({p.returncode}):\n{stdout}\n{stderr}")
    return stdout, stderr, wall, usage.ru_maxrss * 1024


def processed_rps(stdout: str) -> float:
    # The run's own figure (records over its exact run time); "run finished
    # in 4.0s" is rounded to a tenth, 2.5% at these run lengths.
    m = re.search(r"throughput\s+(\d+) records/s processed", stdout)
    return float(m.group(1)) if m else 0.0


def feeds_block(forex: tuple[str, int], stock: tuple[str, int], news: tuple[str, int]) -> str:
    def feed(name, seed, interval, records, allow=""):
        return f"""
[feeds.{name}]
parser = {{ plugin = "{name}_parser" }}
transforms = [{{ plugin = "{name}_transform"{allow} }}]
[feeds.{name}.generator]
plugin = "{name}_generator"
interval = "{interval}"
records = {records}
seed = {seed}
"""
    return feed("forex", 42, *forex) + feed("stock", 7, *stock) + feed("news", 11, *news)


def local_pipeline(dir: Path, feeds: str, rollover: str, extra: str = "") -> Path:
    text = f"""[pipeline]
name = "bench"
[plugins]
dir = "{PLUGINS}"
{feeds}
[stream]
shards = 4
[queue]
visibility_timeout = "60s"
[processor]
workers = 2
[store]
rollover = {rollover}
[local]
data_dir = "state"
{extra}
"""
    path = dir / "pipeline.toml"
    path.write_text(text)
    return path


def env() -> dict:
    e = dict(os.environ)
    e.pop("RUST_LOG", None)
    return e


# ---------------------------------------------------------------- sections

def section_plugin(args) -> list[dict]:
    if args.debug:
        cmd = ["cargo", "test", "-q", "-p", "pipehost", "--bench", "plugin_path", "--", "--quick"]
    else:
        cmd = ["cargo", "bench", "-q", "-p", "pipehost", "--bench", "plugin_path"]
        if args.quick:
            cmd += ["--", "--quick"]
    out, _, _, _ = run_measured(cmd, env=env(), cwd=ROOT)
    rows = [json.loads(l.split(" ", 1)[1]) for l in out.splitlines() if l.startswith("BENCH-JSON ")]
    if len(rows) != 3:
        raise SystemExit(f"plugin benchmark printed {len(rows)} results:\n{out}")
    return rows


def section_e2e(args, bin: Path) -> dict:
    total = 20_000 if args.quick else 1_000_000
    with tempfile.TemporaryDirectory() as d:
        # More than the pipeline can take; everything else as the default
        # pipeline.toml has it (rollover 5,000 records / 4 MiB / 1 s).
        feeds = feeds_block(("10ms", 2000), ("10ms", 2000), ("10ms", 200))
        path = local_pipeline(Path(d), feeds, '{ records = 5000, bytes = "4MiB", age = "1s" }')
        out, _, wall, rss = run_measured([str(bin), "run", str(path), "--quiet", "--no-watch",
                                          "--max-records", str(total)], env=env())
    return {"records": total, "rps": processed_rps(out), "wall": wall, "rss": rss}


def latencies(state: Path) -> list[int]:
    """Per record: its object's notification time minus its arrival on the stream (ms)."""
    db = sqlite3.connect(state / "pipehost.db")
    done: dict[tuple[int, int, int], int] = {}
    for meta, created in db.execute(
        "SELECT o.metadata, n.created_ms FROM objects o JOIN notifications n "
        "ON n.dedup_id = o.key || '#' || o.etag WHERE o.key NOT LIKE 'errors/%'"):
        m = json.loads(meta)
        shard = int(m["source"].rsplit("-", 1)[1])
        key = (shard, int(m["first-seq"]), int(m["last-seq"]))
        done[key] = max(done.get(key, 0), created)
    ranges: dict[int, list[tuple[int, int, int]]] = {}
    for (shard, first, last), t in done.items():
        ranges.setdefault(shard, []).append((first, last, t))
    for r in ranges.values():
        r.sort()
    starts = {shard: [r[0] for r in rs] for shard, rs in ranges.items()}
    out = []
    for shard, seq, arrival, head in db.execute(
            "SELECT shard, seq, arrival_ms, substr(data, 1, 13) FROM stream_records"):
        i = bisect.bisect_right(starts.get(shard, []), seq) - 1
        if i >= 0:
            first, last, t = ranges[shard][i]
            if seq <= last:
                # An aggregated record (host/src/wire/aggregate.rs) stands
                # for its lines: magic, version, CRC-32, then the count.
                lines = int.from_bytes(head[9:13], "little") if head[:4] == b"\xf5PHA" else 1
                out.extend([t - arrival] * lines)
    return sorted(out)


def pct(xs: list[int], p: float) -> float:
    return float(xs[min(len(xs) - 1, int(len(xs) * p))]) if xs else float("nan")


def section_latency(args, bin: Path) -> dict:
    secs = 5 if args.quick else 30
    # 10k records/s offered: forex 4,500 + stock 4,500 + news 1,000 per second.
    feeds = feeds_block(("100ms", 450), ("100ms", 450), ("100ms", 100))
    with tempfile.TemporaryDirectory() as d:
        path = local_pipeline(Path(d), feeds, '{ records = 5000, bytes = "4MiB", age = "100ms" }')
        out, _, wall, rss = run_measured([str(bin), "run", str(path), "--quiet", "--no-watch",
                                          "--duration", f"{secs}s"], env=env())
        lat = latencies(Path(d) / "state")
    return {"offered": 10_000, "seconds": secs, "records": len(lat), "rps": processed_rps(out),
            "p50": pct(lat, 0.50), "p99": pct(lat, 0.99), "max": lat[-1] if lat else float("nan"), "rss": rss}


def section_scaling(args, bin: Path) -> list[dict]:
    secs = 4 if args.quick else 20
    rows = []
    for factor in (1, 4, 16):
        # The default pipeline.toml's feeds: 200 forex and 200 stock records
        # every 100 ms and 20 news every 500 ms (4,040 records/s), scaled.
        feeds = feeds_block(("100ms", 200 * factor), ("100ms", 200 * factor), ("500ms", 20 * factor))
        offered = 4040 * factor
        with tempfile.TemporaryDirectory() as d:
            path = local_pipeline(Path(d), feeds, '{ records = 5000, bytes = "4MiB", age = "1s" }')
            out, _, wall, rss = run_measured([str(bin), "run", str(path), "--quiet", "--no-watch",
                                              "--duration", f"{secs}s"], env=env())
        gen = re.search(r"generated\s+(\d+) records", out)
        rows.append({"factor": factor, "offered": offered, "generated_rps": int(gen.group(1)) / secs if gen else 0,
                     "rps": processed_rps(out), "rss": rss})
    return rows


def free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def section_moto(args, bin: Path) -> dict:
    venv = ROOT / ".venv/bin"
    if not (venv / "moto_server").exists():
        raise SystemExit("the moto comparison needs .venv with moto server: ./x bench and ./x test create it")
    total = 300 if args.quick else 3000
    port = free_port()
    moto = subprocess.Popen([str(venv / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise SystemExit("moto server did not start")
                time.sleep(0.1)
        e = env() | {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_REGION": "us-east-1"}
        e.pop("AWS_PROFILE", None)
        with tempfile.TemporaryDirectory() as d:
            feeds = feeds_block(("100ms", 200), ("100ms", 200), ("500ms", 20))
            aws = f"""
[aws]
region = "us-east-1"
endpoint = "{url}"
s3_force_path_style = true
receive_wait = "1s"
"""
            path = local_pipeline(Path(d), feeds, '{ records = 5000, bytes = "4MiB", age = "1s" }', aws)
            text = path.read_text().replace('name = "bench"', 'name = "bench"\nbackend = "aws"')
            text = text.replace('visibility_timeout = "60s"', 'visibility_timeout = "60s"\nmax_receives = 5')
            path.write_text(text)
            run_measured([str(bin), "setup", str(path)], env=e)
            out, _, wall, rss = run_measured([str(bin), "run", str(path), "--quiet", "--no-watch",
                                              "--max-records", str(total)], env=e)
            ph = {"records": total, "wall": wall, "rps": total / wall, "rss": rss}
            # The same records, read back from the stream pipehost filled.
            lines = Path(d) / "lines.jsonl"
            subprocess.run([str(venv / "python"), "-c", EXPORT, url, "bench", str(lines)], check=True, env=e)
            n = sum(1 for _ in open(lines))
            out, _, wall, _ = run_measured([str(venv / "python"), str(ROOT / "tests/support/reference_boto3.py"),
                                            url, "--lines", str(lines), "--name", "reference"], env=e)
            ref = json.loads(out.strip().splitlines()[-1])
            ref["rps"] = ref["records"] / ref["total_s"]
            ph["stream_records"] = n
    finally:
        moto.kill()
        moto.wait()
    return {"pipehost": ph, "reference": ref, "ratio": ph["rps"] / ref["rps"]}


EXPORT = r"""
import boto3, json, sys
url, stream, out = sys.argv[1:]
k = boto3.client("kinesis", endpoint_url=url, region_name="us-east-1")

def unpack(data):
    # pipehost's aggregated records (host/src/wire/aggregate.rs): magic,
    # version, CRC-32, count, then LEB128-length-prefixed lines. The
    # reference gets one record per line, as the original design puts them.
    if data[:4] != b"\xf5PHA":
        return [data]
    n, pos, out = int.from_bytes(data[9:13], "little"), 13, []
    for _ in range(n):
        size = shift = 0
        while True:
            b = data[pos]; pos += 1
            size |= (b & 0x7F) << shift; shift += 7
            if b < 0x80:
                break
        out.append(data[pos:pos + size]); pos += size
    return out
with open(out, "w") as f:
    for s in k.list_shards(StreamName=stream)["Shards"]:
        it = k.get_shard_iterator(StreamName=stream, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
        while it:
            r = k.get_records(ShardIterator=it, Limit=10000)
            for rec in r["Records"]:
                feed, key = rec["PartitionKey"].split(":", 1)
                for line in unpack(rec["Data"]):
                    f.write(json.dumps({"feed": feed, "key": key, "data": line.decode()}) + "\n")
            if not r["Records"] and r.get("MillisBehindLatest", 0) == 0:
                break
            it = r.get("NextShardIterator")
"""


# ---------------------------------------------------------------- report

def mib(b: float) -> str:
    return f"{b / 1048576:.0f} MiB"


def verdict(ok: bool) -> str:
    return "met" if ok else "MISSED"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--debug", action="store_true")
    ap.add_argument("--only", default="plugin,e2e,latency,moto,scaling")
    args = ap.parse_args()
    only = set(args.only.split(","))
    bin = ROOT / "target" / ("debug" if args.debug else "release") / "pipehost"
    if not bin.exists():
        raise SystemExit(f"{bin} is missing: build it first (./x bench does)")

    class Rows(list):
        # Each figure is printed (to stderr) as soon as it is measured, so a
        # section that fails or is interrupted does not lose the others.
        def append(self, row):
            note("    " + " | ".join(x for x in row if x))
            super().append(row)

    rows: list[tuple[str, str, str, str]] = Rows()  # what, figure, target, verdict
    if "plugin" in only:
        note("==> plugin path (wasm vs native)")
        for r in section_plugin(args):
            rows.append((f"plugin path, {r['feed']} parse+transform",
                         f"wasm {r['wasm_rps']:,.0f} rec/s ({r['wasm_mbps']:.1f} MB/s) vs native "
                         f"{r['native_rps']:,.0f} ({r['native_mbps']:.1f} MB/s) = {r['ratio']:.2f}x",
                         ">= 0.6x", verdict(r["ratio"] >= 0.6)))
    if "e2e" in only:
        note("==> end to end, local backend, saturated")
        r = section_e2e(args, bin)
        rows.append((f"local e2e sustained ({r['records']:,} records)", f"{r['rps']:,.0f} rec/s",
                     ">= 200,000 rec/s", verdict(r["rps"] >= 200_000)))
        rows.append(("local e2e peak RSS (saturated)", mib(r["rss"]), "< 150 MiB", verdict(r["rss"] < 150 * 1048576)))
    if "latency" in only:
        note("==> latency at 10k records/s offered")
        r = section_latency(args, bin)
        rows.append((f"latency arrival->notified, 10k rec/s offered, {r['seconds']} s ({r['records']:,} records)",
                     f"p50 {r['p50']:.0f} ms, p99 {r['p99']:.0f} ms (max {r['max']:.0f})", "p99 < 250 ms",
                     verdict(r["p99"] < 250)))
        rows.append(("peak RSS at 10k rec/s", mib(r["rss"]), "< 150 MiB", verdict(r["rss"] < 150 * 1048576)))
    if "moto" in only:
        note("==> pipehost vs the original design (boto3) on moto server")
        r = section_moto(args, bin)
        p, ref = r["pipehost"], r["reference"]
        rows.append((f"moto: pipehost backend=aws ({p['records']:,} records)", f"{p['rps']:,.0f} rec/s ({p['wall']:.1f} s)", "", ""))
        rows.append((f"moto: boto3 reference ({ref['records']:,} records)",
                     f"{ref['rps']:,.1f} rec/s ({ref['total_s']:.1f} s: put {ref['put_s']:.1f}, "
                     f"bridge {ref['bridge_s']:.1f}, process {ref['process_s']:.1f})", "", ""))
        rows.append(("moto: pipehost / reference", f"{r['ratio']:.1f}x", ">= 30x", verdict(r["ratio"] >= 30)))
    if "scaling" in only:
        note("==> scaling: default pipeline at 1x, 4x, 16x")
        for r in section_scaling(args, bin):
            rows.append((f"scaling {r['factor']}x ({r['offered']:,} rec/s offered)",
                         f"{r['rps']:,.0f} rec/s processed, RSS {mib(r['rss'])}", "", ""))

    print()
    print(f"pipehost benchmark report{' (QUICK: smoke sizes, figures meaningless)' if args.quick else ''}"
          f"{' (DEBUG build)' if args.debug else ''}")
    print(f"machine: {machine()}")
    w0 = max(len(r[0]) for r in rows)
    w1 = max(len(r[1]) for r in rows)
    print(f"{'what':<{w0}}  {'figure':<{w1}}  {'target':<17} result")
    print("-" * (w0 + w1 + 30))
    for what, fig, target, v in rows:
        print(f"{what:<{w0}}  {fig:<{w1}}  {target:<17} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
