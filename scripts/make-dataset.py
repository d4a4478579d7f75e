#!/usr/bin/env python3
"""Writes a sample dataset, the same bytes on every machine and every run.

    scripts/make-dataset.py jsonl 1000 events.jsonl       # 1000 JSON Lines records (~100 KB)
    scripts/make-dataset.py csv 1000 events.csv           # the same records as CSV, with a header
    scripts/make-dataset.py jsonl 10000000 big.jsonl      # ~1 GB, for bench/data.sh
    scripts/make-dataset.py jsonl 1000 dirty.jsonl --dirty 100   # every 100th amount is "n/a"

Each record is an order event: id (1..=N), user, country, kind, amount (cents), an ISO
timestamp and a short note. The values come from a fixed linear congruential generator, not
from Python's `random`, so the bytes never depend on the Python version. With `--dirty K`, every
K-th record's amount is the string "n/a" (dirty data, for trying failure tolerance and
`--retry-failed`); the other records are unchanged.
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


def main():
    args = sys.argv[1:]
    dirty = 0
    if len(args) == 5 and args[3] == "--dirty" and args[4].isdigit() and int(args[4]) > 0:
        dirty = int(args[4])
        args = args[:3]
    if len(args) != 3 or args[0] not in ("jsonl", "csv") or not args[1].isdigit():
        sys.exit("usage: make-dataset.py jsonl|csv RECORDS OUT [--dirty K]")
    fmt, count, out = args[0], int(args[1]), args[2]
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    with open(out, "w", encoding="utf-8", newline="\n") as f:
        if fmt == "csv":
            f.write("id,user,country,kind,amount,ts,note\n")
        lines = []
        for r in records(count):
            if dirty and r["id"] % dirty == 0:
                r["amount"] = '"n/a"' if fmt == "jsonl" else "n/a"
            if fmt == "jsonl":
                lines.append(
                    f'{{"id":{r["id"]},"user":"{r["user"]}","country":"{r["country"]}",'
                    f'"kind":"{r["kind"]}","amount":{r["amount"]},"ts":"{r["ts"]}",'
                    f'"note":"{r["note"]}"}}\n'
                )
            else:
                lines.append(
                    f'{r["id"]},{r["user"]},{r["country"]},{r["kind"]},{r["amount"]},'
                    f'{r["ts"]},{r["note"]}\n'
                )
            if len(lines) == 100000:
                f.writelines(lines)
                lines.clear()
        f.writelines(lines)


if __name__ == "__main__":
    main()
