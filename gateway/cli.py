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
