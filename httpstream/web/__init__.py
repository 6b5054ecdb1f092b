"""
The HTTP server: the Klein app that routes to the transports, the server API, health, metrics and the demo page;
the HTTP channel with read deadlines; TLS contexts.

May import anything below it; only tap and cli import it.
"""
