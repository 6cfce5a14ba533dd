"""orderwatch's benchmark suite: one command, one table, each figure next to its target.

    make bench                                # or: .venv/bin/python benchmarks/run.py
    .venv/bin/python benchmarks/run.py --quick     # small sizes, about a minute
    .venv/bin/python benchmarks/run.py --only a,e  # some sections

(a) diff + Store.record throughput (orders/s) at 10k, 100k, 1M stored orders with 1% churn (a real SQLite file);
(b) requests and bytes per poll, incremental vs full sweep, at 100k orders with 1% churn, against the simulator;
(c) one full poll's wall and client CPU time against a bare "fetch every page with httpx and parse the JSON"
    client, the simulator running in its own process so that its CPU is not counted; and the baseline (the first
    full poll, into an empty store) at 100k and 1M orders against the same client;
(d) peak RSS (ru_maxrss, from wait4) of the real ``orderwatch poll`` command with 1M orders stored;
(e) start-up time of the real ``orderwatch changes`` against a small database (median of several runs);
(f) what an incremental poll costs to report every change, as a share of a full sweep's requests, per API and
    scenario, every event checked against the simulator (``detection.py``, in its own process).

Every measurement runs in its own process (``worker.py``, or the ``orderwatch`` command; the simulator in
``server.py``). ``worker.streamed`` mirrors ``Poller._full``'s use of ``FullSweep``: keep them in step.
"""

from __future__ import annotations

import argparse
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
PY = sys.executable


@dataclass
class Sizes:
    """How big each section runs."""

    diffstore: tuple[int, ...]
    requests: int
    fullpoll: int
    rss: int
    startup_runs: int
    rounds: int
    fullpoll_runs: int  # (c): alternating runs of each client; the machine's noise needs a dozen for a stable median
    baseline: tuple[tuple[int, int], ...]  # (c): (orders, alternating runs) of the first poll into an empty store


FULL = Sizes(
    diffstore=(10_000, 100_000, 1_000_000),
    requests=100_000,
    fullpoll=100_000,
    rss=1_000_000,
    startup_runs=9,
    rounds=3,
    fullpoll_runs=15,
    baseline=((100_000, 3), (1_000_000, 1)),
)
QUICK = Sizes(
    diffstore=(2_000, 10_000, 50_000),
    requests=10_000,
    fullpoll=10_000,
    rss=50_000,
    startup_runs=5,
    rounds=2,
    fullpoll_runs=3,
    baseline=((10_000, 2), (50_000, 1)),
)


@dataclass
class Table:
    """The result rows: (section, what, figure, target, verdict)."""

    rows: list[tuple[str, str, str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, section: str, what: str, figure: str, target: str = "", ok: bool | None = None) -> None:
        """One row; ``ok`` None for a figure without a target."""
        verdict = "" if ok is None else ("ok" if ok else "MISS")
        self.rows.append((section, what, figure, target, verdict))
        print(f"  {section}  {what}: {figure}" + (f"   (target {target}: {verdict})" if target else ""), flush=True)

    def render(self) -> str:
        """The table as aligned text."""
        head = ("", "measure", "figure", "target", "")
        widths = [max(len(r[i]) for r in [head, *self.rows]) for i in range(5)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in [head, *self.rows]]
        lines.insert(1, "-" * len(max(lines, key=len)))
        return "\n".join(lines + [f"  note: {n}" for n in self.notes])


def machine() -> str:
    """CPU model, cores, memory, Python, SQLite and the load average now."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        mem_kb = 0
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return (
        f"{model}, {os.cpu_count()} cores, {mem_kb / 2**20:.0f} GB RAM; Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {platform.system()} {platform.release()}; load average {load}"
    )


def work(*args: str) -> dict[str, Any]:
    """Run ``worker.py ARGS`` in a fresh process and return its result."""
    proc = subprocess.run([PY, str(HERE / "worker.py"), *args], capture_output=True, text=True, check=False)
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("RESULT "):
            result: dict[str, Any] = orjson.loads(line[len("RESULT ") :])
            return result
    raise RuntimeError(f"worker {args[0]} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")


@contextmanager
def sim_process(api: str, orders: int) -> Iterator[str]:
    """The simulator with ``orders`` orders of ``api``, served by its own process; yields its URL."""
    proc = subprocess.Popen(
        [PY, str(HERE / "server.py"), "--api", api, "--orders", str(orders)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        line = proc.stdout.readline().split()
        if not line or line[0] != "READY":
            raise RuntimeError(f"the simulator process did not start (exit {proc.poll()})")
        yield line[1]
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def human(n: float) -> str:
    """1000 → 1k, 1000000 → 1M."""
    for unit, size in (("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:g}{unit}"
    return f"{n:g}"


def section_a(t: Table, s: Sizes, db: Path) -> None:
    """(a) diff + store throughput: the streamed path a full poll takes, and the whole-list path."""
    build_us = 0.0
    for n in s.diffstore:
        r = work("diffstore", "--orders", str(n), "--rounds", str(s.rounds), "--db", str(db))
        build_us = r["build_per_order_us"]
        rate, whole = r["streamed_rate"], r["whole_rate"]
        t.add(
            "a",
            f"{human(n)} stored, 1% churn: streamed per page (a full poll's path; median, index kept)",
            f"{rate:,.0f} orders/s ({r['streamed']:.2f} s); first round (index read) {r['streamed_first_rate']:,.0f}/s",
            ">= 100,000",
            rate >= 100_000,
        )
        parts = r["whole"]
        t.add(
            "a",
            f"{human(n)} stored, 1% churn: whole list (snapshot load + diff + record)",
            f"{whole:,.0f} orders/s ({parts['snapshot']:.2f} + {parts['diff']:.2f} + {parts['record']:.2f} s)",
            ">= 100,000",
            whole >= 100_000,
        )
        t.add("a", f"{human(n)}: first poll's writes (baseline, streamed)", f"{n / r['baseline_write']:,.0f} orders/s")
    t.add("a", "Order.build (orjson sort_keys + XXH3-128), per order", f"{build_us:.1f} µs CPU")


def section_b(t: Table, s: Sizes, db: Path) -> None:
    """(b) requests and bytes per poll."""
    for api in ("ace", "lsky"):
        r = work("requests", "--api", api, "--orders", str(s.requests), "--rounds", str(s.rounds), "--db", str(db))
        inc, full = r["incremental"], r["full"]
        share = inc["requests"] / full["requests"]
        t.add(
            "b",
            f"{api}: requests/poll at {human(r['orders'])}, 1% churn: incremental vs full",
            f"{inc['requests']:.0f} vs {full['requests']} ({share:.1%})",
            "<= 5%",
            share <= 0.05,
        )
        t.add(
            "b",
            f"{api}: bytes/poll, incremental vs full",
            f"{inc['bytes'] / 1e6:.2f} MB vs {full['bytes'] / 1e6:.1f} MB ({inc['bytes'] / full['bytes']:.1%})",
        )


def section_c(t: Table, s: Sizes, db: Path) -> None:
    """(c) one full poll against the bare client."""
    for api in ("ace", "lsky"):
        with sim_process(api, s.fullpoll) as url:
            r = work("fullpoll", "--api", api, "--url", url, "--rounds", str(s.fullpoll_runs), "--db", str(db))
        bare, ours = r["bare"], r["orderwatch"]
        what = f"{api}: full poll of {human(r['orders'])} ({r['requests']} requests)"
        t.add(
            "c",
            f"{what}: wall vs bare client (median; index kept between sweeps)",
            f"{ours['wall']:.2f} s vs {bare['wall']:.2f} s = {r['wall_ratio']:.2f}x",
            "<= 1.5x",
            r["wall_ratio"] <= 1.5,
        )
        t.add(
            "c",
            f"{what}: client CPU vs bare client",
            f"{ours['cpu']:.2f} s vs {bare['cpu']:.2f} s = {r['cpu_ratio']:.2f}x",
            "<= 2x",
            r["cpu_ratio"] <= 2.0,
        )
        first = r["first_sweep"]
        t.add(
            "c",
            f"{api}: first full poll of a process (reads the index) vs bare client: wall / CPU",
            f"{first['wall'] / bare['wall']:.2f}x / {first['cpu'] / bare['cpu']:.2f}x (one run)",
        )
    for n, runs in s.baseline:
        with sim_process("ace", n) as url:
            r = work("baseline", "--api", "ace", "--url", url, "--rounds", str(runs), "--db", str(db))
        bare, ours = r["bare"], r["orderwatch"]
        t.add(
            "c",
            f"ace: baseline (first full poll, empty store) of {human(r['orders'])} vs bare client: wall "
            f"({'median of ' + str(runs) if runs > 1 else 'one run'})",
            f"{ours['wall']:.2f} s vs {bare['wall']:.2f} s = {r['wall_ratio']:.2f}x (CPU {ours['cpu']:.2f} s)",
            "<= 2x",
            r["wall_ratio"] <= 2.0,
        )


def cli_rusage(*args: str) -> tuple[float, float, str]:
    """Run ``orderwatch ARGS`` (the real command); returns its wall seconds, peak RSS in MB, and its stderr."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as err:
        proc = subprocess.Popen(
            [str(Path(PY).parent / "orderwatch"), *args],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env={**os.environ, "NO_COLOR": "1"},
        )
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        err.seek(0)
        text = err.read().decode(errors="replace")
    if proc.returncode != 0:
        raise RuntimeError(f"orderwatch {' '.join(args)} failed (exit {proc.returncode}): {text[-2000:]}")
    return time.perf_counter() - started, usage.ru_maxrss / 1024, text


def section_d(t: Table, s: Sizes, db: Path) -> None:
    """(d) peak RSS (ru_maxrss) of the real ``orderwatch poll`` with many orders stored."""
    config = db / "rss.toml"
    with sim_process("ace", s.rss) as url:
        config.write_text(
            f'database = "{(db / "rss.db").as_posix()}"\n\n[sources.ace]\nkind = "acedata"\nbase_url = "{url}"\n'
            'token = "ace-token"\npage_size = 100\nmax_pages = 100000\ntimeout = "60s"\n'
        )
        for mode, flag, stored in (
            ("baseline (first) full poll", "--full", "into an empty store"),
            ("full poll", "--full", f"{human(s.rss)} stored"),
            ("incremental poll", "--incremental", f"{human(s.rss)} stored"),
        ):
            wall, rss, _ = cli_rusage("--config", str(config), "poll", flag, "--format", "ndjson")
            t.add(
                "d",
                f"peak RSS, `orderwatch poll {flag}` ({mode}), {human(s.rss)} orders, {stored}",
                f"{rss:.0f} MB (wall {wall:.0f} s)",
                "<= 120 MB",
                rss <= 120,
            )
    _, floor, _ = cli_rusage("--config", str(config), "status", "--format", "json")
    t.add("d", "for scale: peak RSS of `orderwatch status` (imports, config, one query)", f"{floor:.0f} MB")


def section_e(t: Table, s: Sizes, db: Path) -> None:
    """(e) start-up time of ``orderwatch changes``."""
    config = small_database(db)
    command = [str(Path(PY).parent / "orderwatch"), "--config", str(config), "changes", "--format", "json"]
    env = {**os.environ, "NO_COLOR": "1"}
    times = []
    for i in range(s.startup_runs + 1):
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, env=env, check=False)
        elapsed = time.perf_counter() - started
        if proc.returncode != 0 or len(orjson.loads(proc.stdout)) != 10:
            raise RuntimeError(f"orderwatch changes failed: {proc.stderr.decode()[-2000:]}")
        if i:  # the first run warms the page cache
            times.append(elapsed)
    median = statistics.median(times)
    t.add(
        "e",
        f"`orderwatch changes` start-up, median of {len(times)}",
        f"{median * 1e3:.0f} ms (min {min(times) * 1e3:.0f} ms)",
        "<= 250 ms",
        median <= 0.25,
    )


def small_database(db: Path) -> Path:
    """A database with 50 orders and 10 events, and a config pointing at it; returns the config's path."""
    from orderwatch.core.diff import diff
    from orderwatch.core.model import Observation, Order
    from orderwatch.store import Store

    def orders(state: str, k: int) -> dict[str, Order]:
        built = (
            Order.build(
                f"o{i}",
                state if i < k else "Pending",
                state if i < k else "Pending",
                {"id": f"o{i}", "state": state if i < k else "Pending"},
            )
            for i in range(50)
        )
        return {o.key: o for o in built}

    store = Store.open(db / "startup.db")
    first = diff(
        {},
        Observation("ace", orders("Pending", 0), complete=True, consistent=True),
        baselined=False,
        now="2026-01-01T00:00:00.000000Z",
    )
    store.record("ace", first, [], now="2026-01-01T00:00:00.000000Z", full=True)
    second = diff(
        store.snapshot("ace"),
        Observation("ace", orders("Paid", 10), complete=True, consistent=True),
        baselined=True,
        now="2026-01-01T00:01:00.000000Z",
    )
    store.record("ace", second, [], now="2026-01-01T00:01:00.000000Z", full=True)
    store.close()
    config = db / "startup.toml"
    config.write_text(
        f'database = "{(db / "startup.db").as_posix()}"\n\n[sources.ace]\nkind = "acedata"\n'
        'base_url = "http://127.0.0.1:9"\ntoken = "bench-not-a-secret"\n'
    )
    return config


def section_f(t: Table, s: Sizes, db: Path) -> None:
    """(f) what a poll costs to report every change, as a share of a full sweep (``detection.py``)."""
    args = [PY, str(HERE / "detection.py"), *(["--quick"] if s is QUICK else [])]
    proc = subprocess.run(args, capture_output=True, text=True, check=False, cwd=HERE)
    result = next((ln for ln in reversed(proc.stdout.splitlines()) if ln.startswith("RESULT ")), None)
    if result is None:
        raise RuntimeError(f"detection.py failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    for row in orjson.loads(result[len("RESULT ") :])["rows"]:
        t.add(
            "f",
            f"{row['api']}: {row['scenario']} at {human(row['orders'])} ({row['mode']}), every event checked",
            f"{row['requests']} vs {row['full_requests']} requests = {row['share']:.1%}"
            + ("" if row["exact"] else ", EVENTS WRONG"),
            f"<= {row['target']:.0%}",
            row["exact"] and row["share"] <= row["target"],
        )


SECTIONS: dict[str, Callable[[Table, Sizes, Path], None]] = {
    "a": section_a,
    "b": section_b,
    "c": section_c,
    "d": section_d,
    "e": section_e,
    "f": section_f,
}


def main() -> int:
    """Run the chosen sections and print the table."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="small sizes (a smoke run, not the figures)")
    parser.add_argument("--only", default="abcdef", help="sections to run, e.g. a,c (default: all)")
    args = parser.parse_args()
    sizes = QUICK if args.quick else FULL
    chosen = [c for c in args.only.replace(",", "") if c in SECTIONS]
    table = Table()
    print(f"machine: {machine()}", flush=True)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="orderwatch-bench-") as tmp:
        for name in chosen:
            SECTIONS[name](table, sizes, Path(tmp))
    table.notes.append(
        "(a) orders are prebuilt (parsing and hashing are in (c)); 'streamed' is FullSweep: its fingerprint "
        "index of the stored orders, pages of 100 through it, exact settling of the misses (keyed lookup, diff, "
        "writes), unseen + Store.record; 'whole list' is Store.snapshot + diff + Store.record"
    )
    table.notes.append(
        "(c) medians of alternating runs; CPU is user+sys of the client process (all its threads) only, the "
        "simulator runs in another process; the bare client uses the same pages, concurrency (4) and orjson"
    )
    table.notes.append(
        f"sizes: {'--quick' if args.quick else 'full'}; took {time.perf_counter() - started:.0f} s; "
        f"load average at the end {', '.join(f'{x:.1f}' for x in os.getloadavg())}"
    )
    print()
    print(f"machine: {machine()}")
    print(table.render())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
