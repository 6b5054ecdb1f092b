# -*- test-case-name: tests.workers.test_supervisor -*-
"""
Workers: one port served by several processes of one machine (C{twistd -n httpstream --workers N}), as one
httpstream process runs Python on one core.

The supervisor (L{httpstream.workers.supervisor.Supervisor}, the parent process) opens the listening sockets and
starts N workers, each C{twistd httpstream} with those sockets handed down (L{httpstream.listeners.adopt}): a full
node on the Redis engine, so publications, presence and history are shared and an C{/emulation} POST that lands on
another worker than its stream is forwarded as between any two nodes. The supervisor relays the workers' logs
(L{httpstream.workers.relay}), restarts one that dies (with back-off), forwards SIGHUP, and stops them all on
SIGTERM. L{httpstream.workers.worker} is the worker's side: telling the supervisor it accepts, and ending with it.

May import: L{httpstream.config}, L{httpstream.listeners}, L{httpstream.logs}, L{httpstream.version}; never the
service or the node (a worker is a node service made by L{httpstream.tap}).
"""
