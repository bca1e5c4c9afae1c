"""How the history database holds up as it fills: a run's writes, the daily
roll-up, and `checker history URL`'s queries, on a database holding weeks of
results.

    python3 benchmarks/history_db.py                 # 10,000 URLs every 5 min, 15 days
    python3 benchmarks/history_db.py --urls 1000 --days 3 --every 60   # quick

It fills a fresh database in a temporary folder with synthetic runs (every
URL each run, 1% down), the way the runs would have, then times, each three
times (medians): storing one more run's rows (the cost a run pays, in its
worker thread), a run's share of rolling up the oldest day (bounded), and
one URL's uptime over 24 h / 7 d / 30 d, down-since and last 10 results. It
prints the database's size. Nothing is sent anywhere; it uses the project's
own `checker.store`.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from checker.results import iso
from checker.store.db import ROLL_UP_ROWS, HistoryDB, Row


def rows_for(urls: list[str], rng: random.Random) -> list[Row]:
    out = []
    for url in urls:
        ok = rng.random() > 0.01
        out.append(Row(url, ok, 200 if ok else 503, None, round(rng.uniform(5, 400), 3), None))
    return out


def timed(fn: object, repeats: int = 3) -> float:
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        runs.append(time.perf_counter() - start)
    return statistics.median(runs)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--urls", type=int, default=10_000)
    parser.add_argument("--days", type=int, default=15, help="history to fill (default 15)")
    parser.add_argument("--every", type=int, default=5, help="minutes between runs")
    args = parser.parse_args()
    rng = random.Random(1)
    urls = [f"https://site{i}.example/health" for i in range(args.urls)]
    now = datetime(2026, 11, 30, tzinfo=UTC)
    runs = args.days * 24 * 60 // args.every
    with tempfile.TemporaryDirectory(prefix="checker-histdb-") as tmp:
        db = HistoryDB(os.path.join(tmp, "history.sqlite3"))
        start = time.perf_counter()
        for i in range(runs):
            when = now - timedelta(minutes=args.every * (runs - i))
            run_id = db.add_run(iso(when), "[]", True, {"total": len(urls)}, iso(when), None)
            batch = rows_for(urls, rng)
            for k in range(0, len(batch), 2048):
                db.add_results(run_id, batch[k : k + 2048])
            if i % 500 == 499:
                print(f"  filled {i + 1:,} of {runs:,} runs", file=sys.stderr)
        fill = time.perf_counter() - start
        results = db.count("results")
        size_mb = os.path.getsize(db.path) / 2**20

        def one_more_run() -> None:
            run_id = db.add_run(iso(now), "[]", True, {"total": len(urls)}, iso(now), None)
            batch = rows_for(urls, rng)
            for k in range(0, len(batch), 2048):
                db.add_results(run_id, batch[k : k + 2048])

        write = timed(one_more_run)
        roll = timed(lambda: db.roll_up(now, history_days=args.days - 2))
        ((url_id, _),) = db.url_ids([urls[len(urls) // 2]])

        def query() -> None:
            for span in (1, 7, 30):
                db.uptime(url_id, now - timedelta(days=span))
            db.down_since(url_id)
            db.recent(url_id, 10)

        ask = timed(query)
        db.close()
    print(f"| history | {args.urls:,} URLs every {args.every} min, {args.days} days |")
    print("|---|---|")
    print(f"| filled | {runs:,} runs, {results:,} results, {size_mb:,.0f} MiB, in {fill:.0f} s |")
    print(f"| one run's rows stored ({args.urls:,}) | {write * 1000:.0f} ms |")
    print(f"| one run's share of the roll-up (at most {ROLL_UP_ROWS:,} rows) | {roll:.2f} s |")
    print(f"| one URL: uptime 24 h / 7 d / 30 d, down since, last 10 | {ask * 1000:.1f} ms |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
