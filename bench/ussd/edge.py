"""The gateway with its hop taken out: ``python -m bench.ussd.edge run [...]``.

Everything a USSD request goes through before and after the hop stays as deployed: the
application and its sub-applications, the request-id middleware, the webhook token check,
the form parser and its hardening, the provider adapter, the hop's log line and metrics,
the access logger. Only ``UssdService.handle`` (the session read and write, the menu step,
the commit) is replaced: its first call runs for real, on the demo database, and every
later call answers that same reply at once. What this server serves per second is the
most any work on the hop itself could reach; ``python -m bench.ussd`` measures it beside
the bare endpoint and the whole gateway.
"""

from __future__ import annotations

from gateway.cli import main
from gateway.ussd import HopOutcome, UssdService

_real_handle = UssdService.handle
_first: list[HopOutcome] = []


async def _answered_once(self: UssdService, request) -> HopOutcome:
    if not _first:
        _first.append(await _real_handle(self, request))
    return _first[0]


UssdService.handle = _answered_once  # type: ignore[method-assign]

if __name__ == "__main__":
    main()
