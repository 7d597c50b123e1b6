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

    api_client = commands.add_parser("add-api-client", help="make a key for a system that calls /api/v1")
    which = api_client.add_mutually_exclusive_group(required=True)
    which.add_argument("--name", help="the client's name, e.g. portal")
    which.add_argument("--disable", metavar="NAME", help="refuse this client's key from now on")
    api_client.add_argument("--scopes", default="otp", help="space or comma separated: otp, sync (default: otp)")
    api_client.add_argument("--agency", action="append", default=[], metavar="CODE",
                            help="an agency whose dossiers a sync client may touch (repeat for several)")
    api_client.set_defaults(func=cmd_add_api_client)

    phone = commands.add_parser("phone", help="a terminal phone that dials the running gateway")
    phone.add_argument("--msisdn", default="0987542228")
    phone.add_argument("--code", default="*384#", help="USSD code to dial")
    phone.add_argument("--url", help="gateway base URL (default from settings)")
    phone.set_defaults(func=cmd_phone)

    args = parser.parse_args(argv)
    args.func(args)
