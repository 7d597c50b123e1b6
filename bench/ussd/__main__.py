"""Run the USSD benchmark: ``python -m bench.ussd [--seconds 15] [--connections 50]``.

Starts the real gateway (SQLite, demo data, hop logging on as in production), a bare
aiohttp endpoint, and the "edge": the gateway with its hop answered from memory
(``bench/ussd/edge.py``), the most that any work on the hop could reach. Drives each with
wrk over loopback with the same session script, and reports hops/s, p50/p99 latency and
the server's CPU per hop of each, and the throughput ratios. Results also go to
bench/results/ussd.json. The machine is noisy: only ratios within one run mean much, and
CPU per hop moves less than hops/s.

``--workers N --database postgres`` (N > 1) measures the gateway on PostgreSQL as
``python -m gateway run --workers 1`` and then ``--workers N`` in the same run, same load,
and reports both and their ratio (results in bench/results/ussd-workers.json). The
database is ``--database-url``, else ``$GATEWAY_BENCH_DATABASE_URL``, else
``$GATEWAY_DATABASE_URL``: a scratch database (the demo data is loaded into it). wrk,
PostgreSQL and the workers share the machine's cores: the figure is what N workers buy
on this machine, not on a server with a core per worker.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from bench.ussd.inproc import BENCH_OTP_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent


def stop_servers(servers: list[subprocess.Popen]) -> None:
    for server in servers:
        server.terminate()
    for server in servers:
        server.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_ready(port: int, path: str, method: str = "GET", timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            data = b"sessionId=w&serviceCode=*384%23&phoneNumber=0987542228&text=" if method == "POST" else None
            urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", data=data, timeout=2).read()
            return
        except OSError:
            time.sleep(0.2)
    raise SystemExit(f"server on {port} did not come up")


def ensure_wrk() -> str:
    found = shutil.which("wrk")
    if found:
        return found
    subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True, stdout=subprocess.DEVNULL)
    return shutil.which("wrk") or "wrk"


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU a process has used so far (Linux), None where /proc is not."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(wrk: str, port: int, seconds: int, connections: int, args: list[str],
            server_pid: int | None = None) -> dict[str, float]:
    """One wrk run; with ``server_pid``, also the server's CPU per hop. Unlike hops/s, that
    figure barely moves with what else the machine runs (wrk itself takes a core)."""
    run_id = f"run:{time.monotonic_ns():x}"  # fresh session ids for every run
    command = [wrk, "-t", str(connections), "-c", str(connections), "-d", f"{seconds}s", "--latency",
               "-s", str(HERE / "sessions.lua"), f"http://127.0.0.1:{port}", "--", run_id, *args]
    cpu_before = cpu_seconds(server_pid) if server_pid else None
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    cpu_after = cpu_seconds(server_pid) if server_pid else None
    line = next(l for l in output.splitlines() if l.startswith("RESULT "))
    requests, duration_us, errors, p50, p99, mean = line.split()[1:]
    result = {
        "hops_per_s": round(int(requests) / (int(duration_us) / 1e6), 1),
        "p50_ms": float(p50),
        "p99_ms": float(p99),
        "mean_ms": float(mean),
        "errors": int(errors),
        "requests": int(requests),
    }
    if cpu_before is not None and cpu_after is not None and int(requests):
        result["server_cpu_us_per_hop"] = round((cpu_after - cpu_before) / int(requests) * 1e6, 1)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1,
                        help="also measure `run --workers N` beside one worker (needs --database postgres)")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--database-url", help="the PostgreSQL database for --database postgres")
    options = parser.parse_args()
    if options.workers < 1:
        parser.error("--workers must be at least 1")
    if options.database == "postgres" or options.workers > 1:
        if options.database != "postgres":
            parser.error("--workers N (N > 1) needs --database postgres: several workers need PostgreSQL")
        url = (options.database_url or os.environ.get("GATEWAY_BENCH_DATABASE_URL")
               or os.environ.get("GATEWAY_DATABASE_URL"))
        if not url or url.partition("://")[0] not in ("postgres", "postgresql"):
            parser.error("--database postgres needs --database-url postgres://... (or GATEWAY_BENCH_DATABASE_URL)")
        workers_bench(options, url)
        return
    wrk = ensure_wrk()
    python = sys.executable

    with tempfile.TemporaryDirectory() as tmp:
        database = Path(tmp) / "bench.sqlite3"
        settings = Path(tmp) / "settings.toml"
        gateway_port, bare_port = free_port(), free_port()
        settings.write_text(
            f'[server]\nport = {gateway_port}\n[database]\nurl = "sqlite://{database}"\n'
            '[logging]\nformat = "json"\n' + BENCH_OTP_SETTINGS
        )
        env = {**os.environ, "GATEWAY_SETTINGS": str(settings), "GATEWAY_SECRET_KEY": "bench"}
        subprocess.run([python, "-m", "gateway", "seed"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        with sqlite3.connect(database) as db:
            codes = [row[0] for row in db.execute("SELECT code FROM dossier WHERE code LIKE '000.32.22.H23-%' ORDER BY id")]
        args = codes[:12] + [f"tail:{code[-11:].replace('-', '')}" for code in codes[12:20]]

        log_sink = open(Path(tmp) / "gateway.log", "w")
        edge_sink = open(Path(tmp) / "edge.log", "w")
        edge_port = free_port()
        # The edge shares the database but none of the gateway's background work: the SMS the
        # gateway's hops queue are the gateway's to send, within its own measured CPU.
        edge_settings = Path(tmp) / "edge.toml"
        edge_settings.write_text(settings.read_text() + "[sms]\nrun_dispatcher = false\n"
                                 "[retention]\nrun_purger = false\n[notifications]\nrun_reminders = false\n")
        edge_env = {**env, "GATEWAY_SETTINGS": str(edge_settings)}
        servers = [
            subprocess.Popen([python, "-m", "gateway", "run"], cwd=ROOT, env=env, stdout=log_sink, stderr=log_sink),
            subprocess.Popen([python, str(HERE / "bare.py"), str(bare_port)], cwd=ROOT),
            # The gateway with its hop answered from memory: the most hop work could reach.
            subprocess.Popen([python, "-m", "bench.ussd.edge", "run", "--port", str(edge_port)], cwd=ROOT, env=edge_env,
                             stdout=edge_sink, stderr=edge_sink),
        ]
        gateway_pid, bare_pid, edge_pid = (server.pid for server in servers)
        try:
            wait_ready(gateway_port, "/healthz")
            wait_ready(bare_port, "/ussd/at", method="POST")
            wait_ready(edge_port, "/ussd/at", method="POST")  # its one real hop: the main menu
            # Warm all up, then measure: bare, gateway, edge, bare again (the best bare is kept).
            for port in (bare_port, gateway_port, edge_port):
                run_wrk(wrk, port, 2, options.connections, args)
            bare = run_wrk(wrk, bare_port, options.seconds, options.connections, args, bare_pid)
            gateway = run_wrk(wrk, gateway_port, options.seconds, options.connections, args, gateway_pid)
            edge = run_wrk(wrk, edge_port, options.seconds, options.connections, args, edge_pid)
            bare_again = run_wrk(wrk, bare_port, options.seconds, options.connections, args, bare_pid)
            if bare_again["hops_per_s"] > bare["hops_per_s"]:
                bare = bare_again
        finally:
            stop_servers(servers)
            log_sink.close()
            edge_sink.close()
        # What the hops showed: proves the sessions walked real journeys, not error screens.
        screens = screens_in(Path(tmp) / "gateway.log")
        edge_screens = screens_in(Path(tmp) / "edge.log")

    result = {
        "connections": options.connections,
        "seconds": options.seconds,
        "bare": bare,
        "gateway": gateway,
        "edge": edge,
        "throughput_ratio": round(gateway["hops_per_s"] / bare["hops_per_s"], 3),
        "edge_ratio": round(edge["hops_per_s"] / bare["hops_per_s"], 3),
        "gateway_screens": screens,
        "edge_screens": edge_screens,
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "ussd.json").write_text(json.dumps(result, indent=2))
    print(f"{'':10} {'hops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7} {'CPU us/hop':>11}")
    for name in ("bare", "gateway", "edge"):
        r = result[name]
        cpu = r.get("server_cpu_us_per_hop", "-")
        print(f"{name:10} {r['hops_per_s']:>10} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['errors']:>7} {cpu:>11}")
    print("screens shown by the gateway:", ", ".join(f"{k} {v}" for k, v in result["gateway_screens"].items()))
    print("screens shown by the edge (one real hop, then its answer):",
          ", ".join(f"{k} {v}" for k, v in result["edge_screens"].items()))
    print(f"throughput ratio gateway/bare: {result['throughput_ratio']} (target >= 0.4, p99 < 20 ms)")
    print(f"edge/bare (the gateway with a hop that costs nothing): {result['edge_ratio']}")


def postgres_codes(url: str) -> list[str]:
    import asyncio

    import asyncpg

    async def read() -> list[str]:
        conn = await asyncpg.connect(url.replace("postgres://", "postgresql://", 1))
        try:
            rows = await conn.fetch("SELECT code FROM dossier WHERE code LIKE '000.32.22.H23-%' ORDER BY id")
        finally:
            await conn.close()
        return [row["code"] for row in rows]

    return asyncio.run(read())


def screens_in(log: Path) -> dict[str, int]:
    screens: dict[str, int] = {}
    for line in open(log, errors="replace"):
        if '"ussd_hop"' in line:
            screen = json.loads(line)["screen"]
            screens[screen] = screens.get(screen, 0) + 1
    return dict(sorted(screens.items(), key=lambda kv: -kv[1]))


def workers_bench(options: argparse.Namespace, url: str) -> None:
    """`run --workers 1` and `run --workers N` on PostgreSQL, one after the other, same load."""
    wrk = ensure_wrk()
    python = sys.executable
    counts = sorted({1, options.workers})
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        settings = Path(tmp) / "settings.toml"
        settings.write_text('[logging]\nformat = "json"\n' + BENCH_OTP_SETTINGS)
        env = {**os.environ, "GATEWAY_SETTINGS": str(settings), "GATEWAY_SECRET_KEY": "bench",
               "GATEWAY_DATABASE_URL": url}
        subprocess.run([python, "-m", "gateway", "seed"], cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL)
        codes = postgres_codes(url)
        args = codes[:12] + [f"tail:{code[-11:].replace('-', '')}" for code in codes[12:20]]
        bare_port = free_port()
        bare = subprocess.Popen([python, str(HERE / "bare.py"), str(bare_port)], cwd=ROOT)
        try:
            wait_ready(bare_port, "/ussd/at", method="POST")
            run_wrk(wrk, bare_port, 2, options.connections, args)
            results["bare"] = run_wrk(wrk, bare_port, options.seconds, options.connections, args)
            for count in counts:
                port = free_port()
                log_path = Path(tmp) / f"gateway-{count}.log"
                with open(log_path, "w") as log_sink:
                    server = subprocess.Popen(
                        [python, "-m", "gateway", "run", "--port", str(port), "--workers", str(count)],
                        cwd=ROOT, env=env, stdout=log_sink, stderr=log_sink)
                    try:
                        wait_ready(port, "/healthz")
                        run_wrk(wrk, port, 2, options.connections, args)  # warm every worker up
                        result = run_wrk(wrk, port, options.seconds, options.connections, args)
                    finally:
                        server.terminate()
                        server.wait(timeout=90)
                result["screens"] = screens_in(log_path)
                results[f"workers_{count}"] = result
        finally:
            bare.terminate()
            bare.wait(timeout=10)

    one, many = results["workers_1"], results[f"workers_{options.workers}"]
    result = {
        "database": "postgres",
        "connections": options.connections,
        "seconds": options.seconds,
        "cpus": os.cpu_count(),
        **results,
        f"scaling_{options.workers}_over_1": round(many["hops_per_s"] / one["hops_per_s"], 3),
        "ratio_1_worker_over_bare": round(one["hops_per_s"] / results["bare"]["hops_per_s"], 3),
        f"ratio_{options.workers}_workers_over_bare": round(many["hops_per_s"] / results["bare"]["hops_per_s"], 3),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "ussd-workers.json").write_text(json.dumps(result, indent=2))
    print(f"PostgreSQL, {options.connections} connections, {options.seconds} s each, {os.cpu_count()} CPUs")
    print(f"{'':12} {'hops/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for name in ["bare"] + [f"workers_{count}" for count in counts]:
        r = result[name]
        print(f"{name:12} {r['hops_per_s']:>10} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['errors']:>7}")
    for count in counts:
        screens = result[f"workers_{count}"]["screens"]
        print(f"screens, {count} worker(s):", ", ".join(f"{k} {v}" for k, v in list(screens.items())[:6]))
    print(f"{options.workers} workers / 1 worker: {result[f'scaling_{options.workers}_over_1']}")


if __name__ == "__main__":
    main()
