"""How long hostile requests hold the event loop: ``python -m bench.hostile [--rounds 800]``.

The real gateway (``python -m gateway run``, SQLite in a temp dir, demo data, webhook token
set, logging as in production) on a free loopback port. A prober in its own process sends
``GET /healthz`` every 5 ms on one kept-alive connection and records each probe's latency:
whatever holds the server's event loop shows as a slow probe.

(a) baseline: the probes alone for ``--baseline-seconds``;
(b) the same probes while a second client sends hostile requests back to back, ``--rounds``
    rounds (or ``--hostile-seconds``, whichever ends first), each round:
    - the 1 MiB USSD request whose text holds 520,000 ``*``-separated inputs (``/ussd/at``);
    - ``TT`` followed by 20,000 letters (``/sms/json/inbound``, JSON; different letters
      each round, so none is a duplicate);
    - a JSON body nested 100,000 deep (``/ussd/json``);
    - a multipart body without a boundary (``/ussd/at``);
    - one of ``--phones`` (300) distinct 100 KB phone numbers (``/ussd/at``), spread over
      the rounds.

Reports p50/p99/max probe latency for (a) and (b), (b)'s max against the 50 ms budget of
issue 7, each hostile kind's latency (at the client over loopback, and as the server's
own access log line measured it), and the server's RSS (``VmRSS``) before and after (b).
Writes bench/results/hostile.json. Loopback only; about 25 s; stops by itself. The figures
are ratios within one run: the machine is noisy.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import sqlite3
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.servers import GatewayProcess, log_tail, write_settings  # noqa: E402

TOKEN = "bench-hostile-token"
PROBE_INTERVAL = 0.005
BUDGET_MS = 50.0
PHONE = "0987542228"
KINDS = ("ussd-1mib", "sms-tt-20k", "json-deep-100k", "multipart-no-boundary", "phone-100kb")
# What each kind must get: status, and how the body starts.
EXPECTED = {
    "ussd-1mib": (200, "END "),
    "sms-tt-20k": (200, '{"status": "accepted"}'),
    "json-deep-100k": (400, "{"),
    "multipart-no-boundary": (400, "{"),
    "phone-100kb": (400, "{"),
}


# --- the prober (its own process, its own event loop) -----------------------------------


def _probe_process(url: str, stop, results, max_seconds: float) -> None:
    results.send(asyncio.run(_probe(url, stop, max_seconds)))
    results.close()


async def _probe(url: str, stop, max_seconds: float) -> list[tuple[float, float, bool]]:
    """(sent at, on the shared monotonic clock; latency ms; ok) for every probe until ``stop``."""
    import aiohttp

    samples: list[tuple[float, float, bool]] = []
    connector = aiohttp.TCPConnector(limit=1)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        async with http.get(url) as response:  # the connection opened before the first sample
            await response.read()
        start = time.perf_counter()
        n = 0
        while not stop.is_set() and time.perf_counter() - start < max_seconds:
            sent = time.perf_counter()
            try:
                async with http.get(url) as response:
                    await response.read()
                    ok = response.status == 200
            except Exception:  # noqa: BLE001 - a failed probe is a sample too
                ok = False
            samples.append((sent, (time.perf_counter() - sent) * 1000, ok))
            n += 1
            delay = start + n * PROBE_INTERVAL - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:  # after a stall: carry on at the cadence, no burst of catch-up probes
                n = int((time.perf_counter() - start) / PROBE_INTERVAL)
    return samples


class Prober:
    def __init__(self, url: str, max_seconds: float) -> None:
        context = multiprocessing.get_context("fork")
        self._stop = context.Event()
        self._receive, send = context.Pipe(duplex=False)
        self._process = context.Process(target=_probe_process, args=(url, self._stop, send, max_seconds))

    def __enter__(self) -> "Prober":
        self._process.start()
        return self

    def finish(self) -> list[tuple[float, float, bool]]:
        self._stop.set()
        if not self._receive.poll(90):
            raise SystemExit("the prober did not report within 90 s")
        samples = self._receive.recv()
        self._process.join(10)
        return samples

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(10)


def summary(samples: list[tuple[float, float, bool]]) -> dict:
    latencies = sorted(latency for _, latency, _ in samples)
    if not latencies:
        return {"probes": 0}

    def rank(q: float) -> float:
        return round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 2)

    return {
        "probes": len(latencies),
        "failed": sum(1 for *_, ok in samples if not ok),
        "p50_ms": rank(0.50),
        "p99_ms": rank(0.99),
        "max_ms": round(latencies[-1], 2),
        "over_budget": sum(1 for latency in latencies if latency > BUDGET_MS),
    }


# --- the hostile client -----------------------------------------------------------------


def hostile_requests(rounds: int, phones: int) -> list[tuple[str, str, dict[str, str], bytes]]:
    """(kind, path, headers, body) for every request of phase (b), built before it starts."""
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    ussd_1mib = b"sessionId=big&serviceCode=*384%23&phoneNumber=" + PHONE.encode() + b"&text=" + b"1*" * 520_000
    deep = b'{"input":' * 100_000 + b'"1"' + b"}" * 100_000
    multipart = (b"--x\r\nContent-Disposition: form-data; name=\"sessionId\"\r\n\r\ns1\r\n--x--\r\n")
    letters = random.Random(7)
    per_round = -(-phones // rounds)
    made_phones = 0
    requests = []
    for r in range(rounds):
        requests.append(("ussd-1mib", "/ussd/at", form, ussd_1mib))
        text = "TT " + "".join(letters.choices(string.ascii_lowercase, k=20_000))
        body = json.dumps({"from": PHONE, "to": "8088", "text": text, "id": f"hostile-tt-{r}"}).encode()
        requests.append(("sms-tt-20k", "/sms/json/inbound", {"Content-Type": "application/json"}, body))
        requests.append(("json-deep-100k", "/ussd/json", {"Content-Type": "application/json"}, deep))
        requests.append(("multipart-no-boundary", "/ussd/at", {"Content-Type": "multipart/form-data"}, multipart))
        for _ in range(min(per_round, phones - made_phones)):
            number = f"09{made_phones:06d}" + "".join(letters.choices(string.digits, k=100_000 - 8))
            body = f"sessionId=p{made_phones}&serviceCode=*384%23&phoneNumber={number}&text=".encode()
            requests.append(("phone-100kb", "/ussd/at", form, body))
            made_phones += 1
    return requests


async def send_hostile(base_url: str, requests, max_seconds: float, rss) -> list[dict]:
    """Back to back, one in flight; stops after ``max_seconds`` whatever is left."""
    import aiohttp

    results = []
    deadline = time.perf_counter() + max_seconds
    headers = {"X-Gateway-Token": TOKEN}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as http:
        for n, (kind, path, extra, body) in enumerate(requests):
            if time.perf_counter() > deadline:
                break
            request_id = f"h:{kind}:{n}"
            started = time.perf_counter()
            async with http.post(base_url + path, data=body,
                                 headers={**headers, **extra, "X-Request-Id": request_id}) as response:
                answer = await response.text()
            results.append({
                "kind": kind, "request_id": request_id, "status": response.status,
                "client_ms": round((time.perf_counter() - started) * 1000, 2), "bytes": len(body),
                "answer": answer[:80], "rss_kb": rss(),
            })
    return results


# --- the server -------------------------------------------------------------------------


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("no VmRSS")


def server_lines(log_path: Path) -> tuple[dict[str, dict], int, int]:
    """Access lines of the hostile requests by request id; error lines; 5xx access lines."""
    by_id: dict[str, dict] = {}
    errors = server_errors = 0
    for line in log_path.read_text(errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            errors += 1  # every line is JSON (issue 7): one that is not counts as an error
            continue
        if record.get("level") in ("error", "critical"):
            errors += 1
        if record.get("event") == "http_request":
            if int(record.get("status", 0)) >= 500:
                server_errors += 1
            request_id = str(record.get("request_id", ""))
            if request_id.startswith("h:"):
                by_id[request_id] = record
    return by_id, errors, server_errors


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return round(values[min(len(values) - 1, int(q * len(values)))], 2) if values else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description="event-loop hold under hostile requests")
    parser.add_argument("--baseline-seconds", type=float, default=4.0)
    parser.add_argument("--rounds", type=int, default=800)
    parser.add_argument("--phones", type=int, default=300, help="distinct 100 KB phone numbers, spread over the rounds")
    parser.add_argument("--hostile-seconds", type=float, default=20.0, help="phase (b) stops after this")
    options = parser.parse_args()
    began = time.monotonic()
    os.environ.pop("GATEWAY_DATABASE_URL", None)  # the settings file names the database

    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as tmp_name:
        tmp = Path(tmp_name)
        settings = write_settings(tmp / "settings.toml", {
            "database": {"url": f"sqlite://{tmp / 'gateway.sqlite3'}"},
            "logging": {"format": "json", "level": "info"},
        })
        env = {"GATEWAY_SECRET_KEY": "bench", "GATEWAY_WEBHOOK_TOKEN": TOKEN}
        seeded = subprocess.run([sys.executable, "-m", "gateway", "--settings", str(settings), "seed"],
                                cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=120)
        if seeded.returncode:
            raise SystemExit(f"seed failed: {seeded.stderr[-2000:]}")
        requests = hostile_requests(options.rounds, options.phones)
        gateway = GatewayProcess(settings, tmp / "gateway.log", env)
        try:
            asyncio.run(gateway.start())
            pid = gateway.process.pid
            healthz = gateway.base_url + "/healthz"

            with Prober(healthz, options.baseline_seconds + 30) as prober:
                time.sleep(options.baseline_seconds)
                baseline = prober.finish()
            print(f"(a) baseline: {len(baseline)} probes", flush=True)

            rss_before = rss_kb(pid)
            with Prober(healthz, options.hostile_seconds + 30) as prober:
                time.sleep(0.5)  # the prober is connected and at its cadence
                window_start = time.perf_counter()
                hostile = asyncio.run(send_hostile(gateway.base_url, requests, options.hostile_seconds,
                                                   lambda: rss_kb(pid)))
                window_end = time.perf_counter()
                time.sleep(0.2)
                loaded = [s for s in prober.finish() if window_start <= s[0] <= window_end]
            rss_after = rss_kb(pid)
            print(f"(b) {len(hostile)} hostile requests in {window_end - window_start:.1f}s, "
                  f"{len(loaded)} probes meanwhile", flush=True)
        except BaseException:
            print(log_tail(tmp / "gateway.log"), file=sys.stderr)
            raise
        finally:
            gateway.stop()
        access, log_errors, server_5xx = server_lines(tmp / "gateway.log")
        with sqlite3.connect(tmp / "gateway.sqlite3") as db:  # what the TT replies were written as
            replies = db.execute(
                "SELECT count(*), max(parts), sum(text LIKE '%(tin da cat bot)'), max(length(text))"
                " FROM outbound_sms WHERE kind = 'reply'").fetchone()
        db.close()

    kinds = {}
    unexpected = []
    for kind in KINDS:
        rows = [row for row in hostile if row["kind"] == kind]
        if not rows:
            continue
        server_ms = [float(access[row["request_id"]]["duration_ms"]) for row in rows if row["request_id"] in access]
        client_ms = [row["client_ms"] for row in rows]
        status, prefix = EXPECTED[kind]
        unexpected += [row for row in rows if row["status"] != status or not row["answer"].startswith(prefix)]
        kinds[kind] = {
            "requests": len(rows),
            "body_bytes": rows[0]["bytes"],
            "statuses": sorted({row["status"] for row in rows}),
            "answer": rows[0]["answer"],
            "client_p50_ms": percentile(client_ms, 0.5),
            "client_max_ms": max(client_ms),
            "server_p50_ms": percentile(server_ms, 0.5),
            "server_max_ms": max(server_ms, default=0.0),
            "server_lines": len(server_ms),
        }
    base, load = summary(baseline), summary(loaded)
    phone_rss = [row["rss_kb"] for row in hostile if row["kind"] == "phone-100kb"]
    result = {
        "probe_interval_ms": PROBE_INTERVAL * 1000,
        "budget_ms": BUDGET_MS,
        "baseline": base,
        "hostile": load,
        "hostile_max_over_budget": round(load["max_ms"] / BUDGET_MS, 3),
        "hostile_p99_over_baseline_p99": round(load["p99_ms"] / base["p99_ms"], 2) if base["p99_ms"] else None,
        "kinds": kinds,
        "rss_kb": {"before": rss_before, "after": rss_after, "growth": rss_after - rss_before,
                   "peak_during": max(row["rss_kb"] for row in hostile),
                   "phones_first": phone_rss[0] if phone_rss else None,
                   "phones_last": phone_rss[-1] if phone_rss else None},
        "tt_replies": {"written": replies[0], "max_parts": replies[1], "cut_marked": replies[2] or 0,
                       "max_chars": replies[3]},
        "unexpected_answers": unexpected[:5],
        "server_log_errors": log_errors,
        "server_5xx": server_5xx,
        "machine_cores": os.cpu_count(),
        "total_seconds": round(time.monotonic() - began, 1),
    }
    out_dir = ROOT / "bench" / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "hostile.json").write_text(json.dumps(result, indent=2) + "\n")

    print()
    print(f"{'GET /healthz every 5 ms':34} {'probes':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'>50ms':>6}")
    for name, s in (("(a) alone", base), ("(b) beside hostile requests", load)):
        print(f"{name:34} {s['probes']:>7} {s['p50_ms']:>8} {s['p99_ms']:>8} {s['max_ms']:>8} {s['over_budget']:>6}")
    print(f"(b) max / 50 ms budget: {result['hostile_max_over_budget']}; "
          f"(b) p99 / (a) p99: {result['hostile_p99_over_baseline_p99']}")
    print()
    print(f"{'hostile kind':24} {'n':>4} {'bytes':>9} {'status':>7} {'client p50/max ms':>18} {'server p50/max ms':>18}")
    for kind, k in kinds.items():
        print(f"{kind:24} {k['requests']:>4} {k['body_bytes']:>9} {'/'.join(map(str, k['statuses'])):>7} "
              f"{k['client_p50_ms']:>8} /{k['client_max_ms']:>8} {k['server_p50_ms']:>8} /{k['server_max_ms']:>8}")
    r = result["rss_kb"]
    print(f"\nserver RSS: {r['before'] / 1024:.1f} MiB before (b), {r['after'] / 1024:.1f} MiB after "
          f"(growth {r['growth'] / 1024:+.1f} MiB, peak {r['peak_during'] / 1024:.1f} MiB); over the "
          f"{kinds.get('phone-100kb', {}).get('requests', 0)} phones {r['phones_first']} -> {r['phones_last']} kB")
    t = result["tt_replies"]
    print(f"TT replies written {t['written']}, at most {t['max_parts']} parts ({t['max_chars']} chars), "
          f"{t['cut_marked']} marked cut; "
          f"server error lines {log_errors}, 5xx {server_5xx}; {result['total_seconds']}s in all")
    if unexpected or server_5xx or base["failed"] or load["failed"]:
        raise SystemExit(f"unexpected answers or failures: {unexpected[:3]} (see bench/results/hostile.json)")


if __name__ == "__main__":
    main()
