"""The baseline: a bare aiohttp endpoint that parses the same form and answers CON."""

import sys

from aiohttp import web


async def ussd(request: web.Request) -> web.Response:
    form = await request.post()
    return web.Response(text="CON " + str(form.get("text", "")), content_type="text/plain")


app = web.Application()
app.router.add_post("/ussd/at", ussd)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
