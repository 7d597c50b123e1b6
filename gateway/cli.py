"""Command line: ``python -m gateway run | migrate | seed | dispatch | purge | phone | add-api-client``."""

from __future__ import annotations

import argparse
import asyncio
import sys

from gateway import logs
from gateway.settings import Settings, SettingsError, load


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load(args.settings)
    except SettingsError as exc:
        print(f"settings error: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc


def cmd_run(args: argparse.Namespace) -> None:
    from aiohttp import web

    from gateway.app import create_app

    settings = _settings(args)
    logs.configure(settings.logging.level, settings.logging.format)
    host = args.host or settings.server.host
    port = args.port or settings.server.port
    log = logs.get_logger("gateway")
    if args.worker_socket is not None:
        _serve_worker(args, settings, log)
        return
    if args.workers < 1:
        print("run: --workers must be at least 1", file=sys.stderr)
        raise SystemExit(2)
    if args.workers > 1:
        scheme = settings.database.url.partition("://")[0].lower()
        if scheme not in _POSTGRES_SCHEMES:
            print(f"run --workers {args.workers}: several workers need PostgreSQL, and database.url is "
                  f"{scheme}://... (SQLite serves one process: drop --workers, or set database.url or "
                  "GATEWAY_DATABASE_URL to a postgres:// URL)", file=sys.stderr)
            raise SystemExit(2)
        raise SystemExit(_supervise(args, settings, host, port, log))
    log.info("serving", host=host, port=port, database=settings.database.url.split("://")[0])
    # Access log on, as one JSON line per request through structlog and its redaction
    # (logs.AccessLogger): method, path, status, size, duration, request id. Never the query
    # string, where providers put phone numbers and texts; and never aiohttp's own
    # plain-text format. Refused and malformed requests show here with their 4xx status.
    # Quieter: logging.level = "warning" drops these lines with the other info lines.
    try:
        web.run_app(create_app(settings), host=host, port=port, print=None, access_log_class=logs.AccessLogger)
    except Exception:
        # A failed start (port taken, database unreachable) as a JSON line, not a raw traceback.
        log.exception("server_failed")
        raise SystemExit(1) from None


# -- run --workers N -----------------------------------------------------------------------
#
# The parent process binds the port and serves nothing: it runs the migrations once, opens
# one listening socket per worker on the same address with SO_REUSEPORT (the kernel spreads
# new connections evenly over them), and starts each worker as ``python -m gateway run`` on
# its inherited socket. Each worker is the whole gateway (its dispatcher, purger and
# reminders take their database leases, so one of each works at a time). The parent keeps
# the sockets: a worker that crashes is reported and started again on the same socket, and
# connections that arrive meanwhile wait in its queue. SIGTERM or SIGINT to the parent is
# passed on (a second one kills the workers); it exits once they all have.

_POSTGRES_SCHEMES = ("postgres", "postgresql", "asyncpg", "psycopg")
_WORKER_POLL_SECONDS = 0.2
# A worker that exits sooner than this after its start counts as a failed start; after
# this many in a row the parent gives up (a worker that cannot start will not start).
_FAST_EXIT_SECONDS = 10.0
_MAX_FAST_EXITS = 5


def _listen_sockets(host: str, port: int, count: int) -> list:
    """``count`` listening sockets on one address, in one SO_REUSEPORT group."""
    import socket

    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    if port:
        # SO_REUSEPORT would let this join another server's group on the port without a
        # word: a plain bind first fails if anything listens there already.
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(family, kind, proto)
            sockets.append(sock)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(address)
            address = sock.getsockname()  # port 0: the others join the port the first got
            sock.listen(1024)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _supervise(args: argparse.Namespace, settings: Settings, host: str, port: int, log) -> int:
    import os
    import signal
    import subprocess
    import time

    count = args.workers
    try:
        if settings.database.migrate_on_start:
            from models.db import migrate

            asyncio.run(migrate(settings.database.url))  # once, not racing in every worker
        sockets = _listen_sockets(host, port, count)
    except Exception:
        log.exception("server_failed")
        return 1
    port = sockets[0].getsockname()[1]
    log.info("serving", host=host, port=port, database=settings.database.url.split("://")[0],
             workers=count, pid=os.getpid())

    workers: dict[int, subprocess.Popen] = {}
    started_at: dict[int, float] = {}
    fast_exits = dict.fromkeys(range(count), 0)
    restart_at: dict[int, float] = {}
    signals: list[int] = []
    failed = False

    def start(slot: int) -> None:
        fd = sockets[slot].fileno()
        command = [sys.executable, "-m", "gateway"] + (["--settings", args.settings] if args.settings else [])
        command += ["run", "--host", host, "--port", str(port), "--worker-socket", str(fd),
                    "--worker-index", str(slot), "--parent-pid", str(os.getpid())]
        process = workers[slot] = subprocess.Popen(command, pass_fds=[fd])
        started_at[slot] = time.monotonic()
        if signals:  # a signal came while it was starting: the handler did not see it
            process.send_signal(signal.SIGTERM)
        log.info("worker_started", worker=slot, pid=process.pid)

    def on_signal(signum: int, frame: object) -> None:
        signals.append(signum)
        for process in workers.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM if len(signals) == 1 else signal.SIGKILL)

    previous = {signum: signal.signal(signum, on_signal) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        for slot in range(count):
            start(slot)
        while workers or (restart_at and not signals):
            time.sleep(_WORKER_POLL_SECONDS)
            for slot, process in list(workers.items()):
                code = process.poll()
                if code is None:
                    continue
                del workers[slot]
                if signals:
                    log.info("worker_stopped", worker=slot, pid=process.pid, exit_code=code)
                    failed = failed or code not in (0, -signal.SIGTERM)
                    continue
                lived = time.monotonic() - started_at[slot]
                how = f"killed by signal {-code}" if code < 0 else f"exit code {code}"
                fast_exits[slot] = fast_exits[slot] + 1 if lived < _FAST_EXIT_SECONDS else 0
                if not args.restart or fast_exits[slot] >= _MAX_FAST_EXITS:
                    log.error("worker_died", worker=slot, pid=process.pid, exit_code=code, how=how,
                              seconds=round(lived, 1), restart=False)
                    failed = True
                    sockets[slot].close()  # the kernel stops sending it connections
                    if fast_exits[slot] >= _MAX_FAST_EXITS:
                        log.error("workers_give_up", worker=slot, fast_exits=fast_exits[slot],
                                  hint="a worker that exits at once will not start: see its log lines above")
                        on_signal(signal.SIGTERM, None)
                    continue
                delay = min(2.0 ** (fast_exits[slot] - 1), 8.0) if fast_exits[slot] else 0.0
                log.error("worker_died", worker=slot, pid=process.pid, exit_code=code, how=how,
                          seconds=round(lived, 1), restart=True, restart_in_seconds=delay)
                restart_at[slot] = time.monotonic() + delay
            for slot, when in list(restart_at.items()):
                if signals:
                    restart_at.clear()
                elif time.monotonic() >= when:
                    del restart_at[slot]
                    start(slot)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for process in workers.values():
            process.kill()
            process.wait()
        for sock in sockets:
            sock.close()
    log.info("workers_stopped", failed=failed)
    return 1 if failed else 0


def _serve_worker(args: argparse.Namespace, settings: Settings, log) -> None:
    """One worker of ``run --workers N``: the gateway on the socket the parent opened."""
    import os
    import signal
    import socket

    from aiohttp import web

    from gateway.app import create_app

    _end_with_parent(args.parent_pid)
    sock = socket.socket(fileno=args.worker_socket)
    # The parent ran the migrations: workers starting together must not race through them.
    settings = settings.replace(database={"migrate_on_start": False})

    async def serve() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            # Idempotent: the parent's SIGTERM, a terminal's SIGINT and a service manager's
            # own SIGTERM may all arrive; the first starts the graceful stop.
            loop.add_signal_handler(signum, stop.set)
        runner = web.AppRunner(create_app(settings), handle_signals=False, access_log_class=logs.AccessLogger)
        await runner.setup()
        try:
            await web.SockSite(runner, sock).start()
            log.info("worker_serving", worker=args.worker_index, pid=os.getpid())
            await stop.wait()
        finally:
            await runner.cleanup()  # requests in progress finish; dispatcher, purger, reminders stop

    try:
        asyncio.run(serve())
    except Exception:
        log.exception("server_failed", worker=args.worker_index)
        raise SystemExit(1) from None
    finally:
        sock.close()


def _end_with_parent(parent_pid: int | None) -> None:
    """A worker whose parent dies (even by SIGKILL) gets SIGTERM (Linux), and stops."""
    import os
    import signal

    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass
    if parent_pid is not None and os.getppid() != parent_pid:
        raise SystemExit(1)  # the parent died before the line above


def cmd_migrate(args: argparse.Namespace) -> None:
    from models.db import migrate

    settings = _settings(args)
    asyncio.run(migrate(settings.database.url))
    print("database is up to date")


def cmd_seed(args: argparse.Namespace) -> None:
    from models.db import open_database
    from models.seed import seed

    settings = _settings(args)

    async def main() -> dict[str, int]:
        async with open_database(settings.database.url, run_migrations=True):
            return await seed()

    counts = asyncio.run(main())
    print("demo commune loaded: " + ", ".join(f"{v} {k}" for k, v in counts.items()))


def cmd_dispatch(args: argparse.Namespace) -> None:
    """The outbox dispatcher alone (set sms.run_dispatcher = false in the servers)."""
    import signal

    from gateway.outbox import Dispatcher, Outbox
    from gateway.providers import build_transport
    from gateway.services import build_services
    from gateway.sms_service import SmsService
    from models.db import open_database
    from models.directory import DatabaseDirectory
    from models.fastsql import open_runner

    settings = _settings(args)
    logs.configure(settings.logging.level, settings.logging.format)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            outbox = Outbox(settings, sql=sql)
            directory = DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql)
            service = SmsService(settings, directory, sql, build_services(settings, outbox, directory))
            transport = build_transport(settings, service.sink_for(settings.sms.transport))
            await transport.start()
            try:
                await Dispatcher(settings, transport, sql).run(stop)
            finally:
                await transport.close()
                await sql.close()

    asyncio.run(main())


def cmd_purge(args: argparse.Namespace) -> None:
    """One full retention purge now (the server's purger does the same every interval)."""
    from models.db import open_database
    from models.fastsql import open_runner
    from models.retention import Purger

    settings = _settings(args)
    logs.configure(settings.logging.level, settings.logging.format)

    async def main() -> dict[str, int] | str:
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            purger = Purger(settings, sql)
            try:
                if not await purger.take_lease():
                    return "another process holds the purger lease (it is purging): nothing done"
                try:
                    return await purger.purge_all()
                finally:
                    await purger.release_lease()
            finally:
                await sql.close()

    outcome = asyncio.run(main())
    if isinstance(outcome, str):
        print(outcome)
        return
    print("purged: " + ", ".join(f"{v} {k}" for k, v in outcome.items()))


def cmd_remind(args: argparse.Namespace) -> None:
    """Send the reminders due now (the server's job does the same every interval)."""
    from gateway.outbox import Outbox
    from gateway.services import build_services
    from models.db import open_database
    from models.directory import DatabaseDirectory
    from models.fastsql import open_runner
    from models.reminders import ReminderJob

    settings = _settings(args)
    logs.configure(settings.logging.level, settings.logging.format)

    async def main() -> int | None:
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            try:
                outbox = Outbox(settings, sql=sql)
                directory = DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql)
                services = build_services(settings, outbox, directory)
                job = ReminderJob(settings, sql, services.dossiers, lambda: dt.datetime.now(dt.timezone.utc))
                try:
                    return await job.run_once()
                finally:
                    await job.release()
            finally:
                await sql.close()

    import datetime as dt

    sent = asyncio.run(main())
    print("another process holds the reminders lease: nothing done" if sent is None else f"reminders queued: {sent}")


def cmd_add_api_client(args: argparse.Namespace) -> None:
    """A key for a system that calls /api/v1 (printed once, stored as a hash), or --disable."""
    import datetime as dt

    from gateway.api import ApiClientError, add_api_client, disable_api_client
    from models.db import open_database
    from models.fastsql import open_runner

    settings = _settings(args)

    async def main() -> str:
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            try:
                if args.disable:
                    if not await disable_api_client(sql, args.disable):
                        raise ApiClientError(f"no API client named {args.disable!r}")
                    return f"API client {args.disable!r} disabled: its key is refused from now on"
                scopes = args.scopes.replace(",", " ").split()
                key = await add_api_client(sql, args.name, scopes, dt.datetime.now(dt.timezone.utc), args.agency)
                return (f"API client {args.name!r} added (scopes: {' '.join(sorted(set(scopes)))}). "
                        f"Its key, shown only this once (only its hash is kept):\n{key}")
            finally:
                await sql.close()

    try:
        print(asyncio.run(main()))
    except ApiClientError as exc:
        print(f"add-api-client: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


async def _with_clerks(settings: Settings, work):
    """Run ``work(clerks, sql)`` on the configured database (models.clerks.ClerkService)."""
    from gateway.outbox import Outbox
    from gateway.services import build_services
    from models.db import open_database
    from models.directory import DatabaseDirectory
    from models.fastsql import open_runner

    async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
        sql = open_runner(settings.database.url)
        try:
            directory = DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql)
            return await work(build_services(settings, Outbox(settings, sql=sql), directory).clerks, sql)
        finally:
            await sql.close()


def _run_clerk_command(name: str, settings: Settings, work) -> None:
    from models.clerks import ClerkError

    try:
        print(asyncio.run(_with_clerks(settings, work)))
    except ClerkError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        raise SystemExit(1) from None


def cmd_add_clerk(args: argparse.Namespace) -> None:
    """A clerk account (or an admin's), with a one-time password printed once."""
    import datetime as dt

    from models.audit import CLI

    async def work(clerks, sql) -> str:
        clerk, password = await clerks.create(
            sql, login=args.login, name=args.name, phone=args.phone, role="admin" if args.admin else "clerk",
            agency_codes=args.agency or [], actor=CLI, now=dt.datetime.now(dt.timezone.utc),
        )
        return (f"{clerk.role} {clerk.login!r} added (agencies: {' '.join(clerk.agency_codes) or 'all'}). "
                f"One-time password, shown only this once (it must be changed at the first login):\n{password}")

    _run_clerk_command("add-clerk", _settings(args), work)


def cmd_list_clerks(args: argparse.Namespace) -> None:
    import datetime as dt

    async def work(clerks, sql) -> str:
        now = dt.datetime.now(dt.timezone.utc)
        lines = []
        for clerk in await clerks.list(sql):
            state = "active" if clerk.active else "disabled"
            if clerk.active and clerk.locked_at(now):
                state = f"locked until {clerk.locked_until:%Y-%m-%d %H:%M} UTC"
            if clerk.must_change_password:
                state += ", one-time password not changed yet"
            lines.append(f"{clerk.login}\t{clerk.role}\t{' '.join(clerk.agency_codes) or '-'}\t{state}\t{clerk.name}")
        return "\n".join(lines) if lines else "no clerks yet (add one with add-clerk)"

    _run_clerk_command("list-clerks", _settings(args), work)


def _set_clerk_active(args: argparse.Namespace, active: bool) -> None:
    import datetime as dt

    from models.audit import CLI

    async def work(clerks, sql) -> str:
        async with sql.transaction() as tx:
            clerk = await clerks.set_active(tx, args.login, active, CLI, dt.datetime.now(dt.timezone.utc))
        return f"clerk {clerk.login!r} " + ("enabled" if active else "disabled: its console sessions ended")

    _run_clerk_command("enable-clerk" if active else "disable-clerk", _settings(args), work)


def cmd_disable_clerk(args: argparse.Namespace) -> None:
    _set_clerk_active(args, False)


def cmd_enable_clerk(args: argparse.Namespace) -> None:
    _set_clerk_active(args, True)


def cmd_import_dossiers(args: argparse.Namespace) -> None:
    """Dossiers from a CSV file, checked as the sync API checks them (gateway/importer.py)."""
    from pathlib import Path

    from gateway import importer
    from gateway.outbox import Outbox
    from gateway.services import build_services
    from models.db import open_database
    from models.directory import DatabaseDirectory
    from models.fastsql import open_runner

    if not 1 <= args.chunk_size <= importer.MAX_BATCH:
        print(f"import-dossiers: --chunk-size is 1 to {importer.MAX_BATCH}", file=sys.stderr)
        raise SystemExit(2)
    settings = _settings(args)
    logs.configure(settings.logging.level, settings.logging.format)
    options = importer.ImportOptions(dry_run=args.dry_run, notify=not args.no_notify, encoding=args.encoding,
                                     chunk_size=args.chunk_size, progress=not args.quiet)
    try:  # the whole file is checked before the database is opened
        table = importer.read_table(Path(args.file), options.encoding)
    except importer.ImportFileError as exc:
        print(f"import-dossiers: {exc}", file=sys.stderr)
        raise SystemExit(importer.EXIT_FILE) from None

    async def main() -> importer.ImportSummary:
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            try:
                # The CLI's own services; no dispatcher here to wake: the server's sends the SMS.
                outbox = Outbox(settings, sql=sql)
                directory = DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql)
                services = build_services(settings, outbox, directory)
                return await importer.import_table(settings, sql, services, table, options)
            finally:
                await sql.close()

    try:
        summary = asyncio.run(main())
    except importer.ImportStopped as stopped:
        print("\n".join(stopped.summary.lines()))
        print(f"import-dossiers: stopped: {stopped}; the rows before line {stopped.first_line} are "
              "committed, run the file again to finish", file=sys.stderr)
        raise SystemExit(importer.EXIT_STOPPED) from None
    print("\n".join(summary.lines()))
    raise SystemExit(summary.exit_code)


def cmd_clerk_token(args: argparse.Namespace) -> None:
    """A bearer token for a clerk's use of /api/v1/clerk (printed once, stored as a hash)."""
    import datetime as dt

    from gateway.api_clerk import issue_token
    from gateway.outbox import Outbox
    from gateway.services import build_services
    from models.db import open_database
    from models.directory import DatabaseDirectory
    from models.fastsql import open_runner

    settings = _settings(args)

    async def main() -> str:
        async with open_database(settings.database.url, run_migrations=settings.database.migrate_on_start):
            sql = open_runner(settings.database.url)
            try:
                services = build_services(settings, Outbox(settings, sql=sql),
                                          DatabaseDirectory(settings.ussd.catalogue_cache_seconds, sql))
                return await issue_token(sql, services.clerks, args.login, dt.datetime.now(dt.timezone.utc))
            finally:
                await sql.close()

    try:
        token = asyncio.run(main())
    except LookupError as exc:
        print(f"clerk-token: {exc.args[0]}", file=sys.stderr)
        raise SystemExit(1) from None
    print(f"API token for clerk {args.login!r}, shown only this once (only its hash is kept):\n{token}")


def cmd_phone(args: argparse.Namespace) -> None:
    from gateway.phone_sim import run_phone

    settings = _settings(args)
    url = args.url or f"http://{settings.server.host}:{settings.server.port}"
    raise SystemExit(asyncio.run(run_phone(url, args.msisdn, args.code)))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__)
    parser.add_argument("--settings", help="settings file (default: settings.toml or $GATEWAY_SETTINGS)")
    commands = parser.add_subparsers(dest="command", required=True)

    run = commands.add_parser("run", help="serve the gateway")
    run.add_argument("--host")
    run.add_argument("--port", type=int)
    run.add_argument("--workers", type=int, default=1,
                     help="worker processes sharing the port (more than 1 needs PostgreSQL; default 1)")
    run.add_argument("--no-restart", dest="restart", action="store_false",
                     help="with --workers: do not start a worker again after it died")
    # Set by the parent of --workers for each worker it starts.
    run.add_argument("--worker-socket", type=int, help=argparse.SUPPRESS)
    run.add_argument("--worker-index", type=int, default=0, help=argparse.SUPPRESS)
    run.add_argument("--parent-pid", type=int, help=argparse.SUPPRESS)
    run.set_defaults(func=cmd_run)

    commands.add_parser("migrate", help="apply database migrations").set_defaults(func=cmd_migrate)
    commands.add_parser("dispatch", help="run the SMS outbox dispatcher alone").set_defaults(func=cmd_dispatch)
    commands.add_parser("seed", help="load the demo commune (replaces demo data only)").set_defaults(func=cmd_seed)
    commands.add_parser("purge", help="delete what retention no longer needs, now").set_defaults(func=cmd_purge)
    commands.add_parser("remind", help="send the reminders for uncollected results due now").set_defaults(func=cmd_remind)

    api_client = commands.add_parser("add-api-client", help="make a key for a system that calls /api/v1")
    which = api_client.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", help="the client's name, e.g. portal")
    which.add_argument("--disable", metavar="NAME", help="refuse this client's key from now on")
    api_client.add_argument("--scopes", default="otp", help="space or comma separated: otp, sync (default: otp)")
    api_client.add_argument("--agency", action="append", default=[], metavar="CODE",
                            help="an agency whose dossiers a sync client may touch (repeat for several)")
    api_client.set_defaults(func=cmd_add_api_client)

    add_clerk = commands.add_parser("add-clerk", help="add a clerk account (prints a one-time password)")
    add_clerk.add_argument("--login", required=True, help="lower-case letters, digits, '.', '_' or '-'")
    add_clerk.add_argument("--name", required=True, help="the clerk's full name")
    add_clerk.add_argument("--phone", required=True, help="the clerk's work phone (for SMS commands)")
    add_clerk.add_argument("--agency", action="append", metavar="CODE",
                           help="an agency code the clerk works for (repeat for several)")
    add_clerk.add_argument("--admin", action="store_true", help="an admin: every agency, manages accounts")
    add_clerk.set_defaults(func=cmd_add_clerk)
    commands.add_parser("list-clerks", help="list clerk accounts").set_defaults(func=cmd_list_clerks)
    for verb, func in (("disable", cmd_disable_clerk), ("enable", cmd_enable_clerk)):
        command = commands.add_parser(f"{verb}-clerk", help=f"{verb} a clerk account")
        command.add_argument("login")
        command.set_defaults(func=func)

    imports = commands.add_parser("import-dossiers", help="create or update dossiers from a CSV file",
                                  description="Exit 0: all rows imported; 1: some rows rejected (the others "
                                              "imported); 2: the file cannot be imported (nothing written); "
                                              "3: the database refused a chunk (the chunks before it committed).")
    imports.add_argument("file", help="CSV with a header row of sync API field names (, or ; separated)")
    imports.add_argument("--dry-run", action="store_true", help="check and count what would change; write nothing")
    imports.add_argument("--no-notify", action="store_true", help="record the dossiers without sending SMS")
    imports.add_argument("--encoding", help="the file's encoding if not UTF-8, e.g. cp1258")
    imports.add_argument("--chunk-size", type=int, default=500, help="rows per transaction (1-1000, default 500)")
    imports.add_argument("--quiet", action="store_true", help="no progress bar")
    imports.set_defaults(func=cmd_import_dossiers)

    clerk_token = commands.add_parser("clerk-token", help="make a bearer token for a clerk's use of /api/v1/clerk")
    clerk_token.add_argument("login")
    clerk_token.set_defaults(func=cmd_clerk_token)

    phone = commands.add_parser("phone", help="a terminal phone that dials the running gateway")
    phone.add_argument("--msisdn", default="0987542228")
    phone.add_argument("--code", default="*384#", help="USSD code to dial")
    phone.add_argument("--url", help="gateway base URL (default from settings)")
    phone.set_defaults(func=cmd_phone)

    args = parser.parse_args(argv)
    args.func(args)
