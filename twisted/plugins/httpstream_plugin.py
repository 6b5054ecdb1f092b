# No __init__.py in twisted/ or twisted/plugins/: Twisted's own would be overwritten.
from twisted.application.service import ServiceMaker

httpstream = ServiceMaker(
    "httpstream",
    "httpstream.tap",
    "A Centrifugo-compatible real-time server: HTTP streaming with bidirectional emulation",
    "httpstream",
)
