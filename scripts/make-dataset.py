#!/usr/bin/env python3
"""Writes a sample dataset, the same bytes on every machine and every run.

    scripts/make-dataset.py jsonl 1000 events.jsonl       # 1000 JSON Lines records (~100 KB)
    scripts/make-dataset.py csv 1000 events.csv           # the same records as CSV, with a header
    scripts/make-dataset.py jsonl 10000000 big.jsonl      # ~1 GB, for bench/data.sh
    scripts/make-dataset.py jsonl 1000 dirty.jsonl --dirty 100   # every 100th amount is "n/a"
    scripts/make-dataset.py jsonl 1000 events.jsonl.gz    # compressed by its name: .gz, .zst
    scripts/make-dataset.py jsonl 100000 events.jsonl.zst --frames 65536
                                      # seekable zstd: frames of 64 KiB and a seek table
    scripts/make-dataset.py jsonl 100000 events.jsonl.gz --frames 65536
                                      # gzip members of 64 KiB, indexed by events.jsonl.gz.gzi
    scripts/make-dataset.py parts 100000 lake/ --parts 50 # a prefix of 50 parts, gzip, zstd,
                                                          # plain and empty ones mixed
    scripts/make-dataset.py parquet 100000 events.parquet --row-group 5000
                                                          # nested columns and nulls (pyarrow)

Each record is an order event: id (1..=N), user, country, kind, amount (cents), an ISO
timestamp and a short note. The values come from a fixed linear congruential generator, not
from Python's `random`, so the bytes never depend on the Python version. With `--dirty K`, every
K-th record's amount is the string "n/a" (dirty data, for trying failure tolerance and
`--retry-failed`); the other records are unchanged.

With `--frames N` (a .gz or .zst output), the stream is made of independent frames of N
decompressed bytes, so that a batch can split it: zstd's seekable format (the frames, then a
seek table listing their sizes), or gzip members with a bgzip index beside the file (`OUT.gzi`:
the count, then each member's start after the first, stored and decompressed, as 8-byte
little-endian numbers).

`parts` deals the JSON Lines records, in order, into K objects `part-00000...` under DIR (in
day-NN/ folders of 10): every third one gzip (`.jsonl.gz`, two members), every third zstd
(`.jsonl.zst`), the others plain, and after every tenth an empty part. `parquet` writes the
records with pyarrow, typed and nested: id int64, user and kind strings, country dictionary,
amount decimal(12,2), ts timestamp[us, UTC], note a string or null, tags a list of strings,
geo a struct {lat, lon} or null; row groups of `--row-group` rows (default 10000).
"""

import os
import sys

COUNTRIES = ["FR", "DE", "US", "GB", "JP", "BR", "IN", "ES"]
KINDS = ["view", "click", "cart", "order", "refund"]
NOTES = ["", "gift", "express", "first order", "coupon", "repeat"]


def records(count):
    state = 20261127
    for record_id in range(1, count + 1):
        state = (state * 6364136223846793005 + 1442695040888963407) % 2**64
        r = state >> 16
        seconds = r % (30 * 86400)
        yield {
            "id": record_id,
            "user": f"u{r % 9973}",
            "country": COUNTRIES[(r >> 20) % len(COUNTRIES)],
            "kind": KINDS[(r >> 24) % len(KINDS)],
            "amount": (r >> 28) % 100000,
            "ts": f"2026-11-{1 + seconds // 86400:02d}T{seconds % 86400 // 3600:02d}:"
            f"{seconds % 3600 // 60:02d}:{seconds % 60:02d}Z",
            "note": NOTES[(r >> 32) % len(NOTES)],
        }


def jsonl_line(r):
    return (
        f'{{"id":{r["id"]},"user":"{r["user"]}","country":"{r["country"]}",'
        f'"kind":"{r["kind"]}","amount":{r["amount"]},"ts":"{r["ts"]}",'
        f'"note":"{r["note"]}"}}\n'
    )


def compressed(path, data):
    """`data` as `path` stores it: gzip for .gz, zstd for .zst (pyarrow), else as it is."""
    if path.endswith(".gz"):
        import gzip

        return gzip.compress(data, mtime=0)
    if path.endswith(".zst"):
        import pyarrow as pa

        return pa.compress(data, codec="zstd", asbytes=True)
    return data


def framed(path, data, frame):
    """`data` as `path` stores it in independent frames of `frame` bytes: a seekable zstd
    stream, or gzip members; and the gzip members' index (None for zstd)."""
    import struct

    pieces = [data[at : at + frame] for at in range(0, len(data), frame)] or [b""]
    frames = [compressed(path, piece) for piece in pieces]
    if path.endswith(".zst"):
        entries = b"".join(struct.pack("<II", len(f), len(p)) for f, p in zip(frames, pieces))
        table = struct.pack("<II", 0x184D2A5E, len(entries) + 9) + entries
        table += struct.pack("<IBI", len(frames), 0, 0x8F92EAB1)
        return b"".join(frames) + table, None
    starts, stored = [], 0
    for k, f in enumerate(frames[:-1]):
        stored += len(f)
        starts.append(struct.pack("<QQ", stored, (k + 1) * frame))
    return b"".join(frames), struct.pack("<Q", len(starts)) + b"".join(starts)


def write_parts(count, out, parts):
    lines = [jsonl_line(r) for r in records(count)]
    per = -(-len(lines) // parts)
    for k in range(parts):
        chunk = "".join(lines[k * per : (k + 1) * per]).encode()
        ext = ["jsonl.gz", "jsonl.zst", "jsonl"][k % 3]
        if ext == "jsonl.gz":
            # Two members, as pigz or `cat a.gz b.gz` write them.
            half = len(chunk) // 2
            data = compressed(".gz", chunk[:half]) + compressed(".gz", chunk[half:])
        else:
            data = compressed(ext, chunk)
        folder = os.path.join(out, f"day-{k // 10:02d}")
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, f"part-{k:05d}.{ext}"), "wb") as f:
            f.write(data)
        if k % 10 == 9:
            open(os.path.join(folder, f"part-{k:05d}-empty.jsonl"), "wb").close()


def write_parquet(count, out, row_group):
    import datetime
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = list(records(count))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    table = pa.table(
        {
            "id": pa.array([r["id"] for r in rows], pa.int64()),
            "user": pa.array([r["user"] for r in rows], pa.string()),
            "country": pa.array([r["country"] for r in rows], pa.string()).dictionary_encode(),
            "kind": pa.array([r["kind"] for r in rows], pa.string()),
            "amount": pa.array(
                [decimal.Decimal(r["amount"]).scaleb(-2) for r in rows], pa.decimal128(12, 2)
            ),
            "ts": pa.array(
                [
                    datetime.datetime.strptime(r["ts"], "%Y-%m-%dT%H:%M:%SZ").replace(
                        tzinfo=datetime.timezone.utc
                    )
                    - epoch
                    for r in rows
                ],
                pa.duration("us"),
            ).cast(pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "note": pa.array([r["note"] or None for r in rows], pa.string()),
            "tags": pa.array(
                [[r["kind"], r["country"]][: r["id"] % 3] for r in rows], pa.list_(pa.string())
            ),
            "geo": pa.array(
                [
                    None if r["id"] % 7 == 0 else {"lat": (r["id"] % 180) - 90.5, "lon": r["id"] % 360 / 4}
                    for r in rows
                ],
                pa.struct([("lat", pa.float64()), ("lon", pa.float64())]),
            ),
        }
    )
    pq.write_table(table, out, row_group_size=row_group, compression="zstd")


def usage():
    sys.exit(
        "usage: make-dataset.py jsonl|csv RECORDS OUT [--dirty K] [--frames BYTES]\n"
        "       make-dataset.py parts RECORDS DIR --parts K\n"
        "       make-dataset.py parquet RECORDS OUT [--row-group N]"
    )


def main():
    args = sys.argv[1:]
    if len(args) < 3 or not args[1].isdigit():
        usage()
    fmt, count, out, rest = args[0], int(args[1]), args[2], args[3:]
    options = dict(zip(rest[::2], rest[1::2]))
    if len(rest) % 2 or any(not v.isdigit() or int(v) == 0 for v in options.values()):
        usage()
    if out.rstrip("/") and os.path.dirname(out.rstrip("/")):
        os.makedirs(os.path.dirname(out.rstrip("/")), exist_ok=True)
    if fmt == "parts" and set(options) == {"--parts"}:
        write_parts(count, out, int(options["--parts"]))
        return
    if fmt == "parquet" and set(options) <= {"--row-group"}:
        write_parquet(count, out, int(options.get("--row-group", 10000)))
        return
    if fmt not in ("jsonl", "csv") or not set(options) <= {"--dirty", "--frames"}:
        usage()
    frame = int(options.get("--frames", 0))
    if frame and not out.endswith((".gz", ".zst")):
        sys.exit("--frames needs a compressed output: OUT ending with .gz or .zst")
    dirty = int(options.get("--dirty", 0))
    chunks = []
    if fmt == "csv":
        chunks.append("id,user,country,kind,amount,ts,note\n")
    for r in records(count):
        if dirty and r["id"] % dirty == 0:
            r["amount"] = '"n/a"' if fmt == "jsonl" else "n/a"
        if fmt == "jsonl":
            chunks.append(jsonl_line(r))
        else:
            chunks.append(
                f'{r["id"]},{r["user"]},{r["country"]},{r["kind"]},{r["amount"]},'
                f'{r["ts"]},{r["note"]}\n'
            )
    data = "".join(chunks).encode()
    index = None
    if frame:
        data, index = framed(out, data, frame)
    else:
        data = compressed(out, data)
    with open(out, "wb") as f:
        f.write(data)
    if index is not None:
        with open(out + ".gzi", "wb") as f:
            f.write(index)


if __name__ == "__main__":
    main()
