"""
httpstream: a Centrifugo-compatible (client protocol v2) real-time messaging server on Twisted.

Its headline transport is HTTP streaming with bidirectional emulation: one long-lived chunked POST carries the
server's frames; the client's commands arrive as short POSTs to /emulation.
"""

__version__ = "0.1.0"
