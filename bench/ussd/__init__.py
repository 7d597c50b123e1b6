"""USSD benchmark: full sessions against the real gateway next to a bare aiohttp endpoint."""
