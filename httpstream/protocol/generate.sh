#!/bin/sh
# Regenerate client_pb2.py and client_pb2.pyi from client.proto.
# Needs the pinned dev extra (grpcio-tools==1.85.1); the output is committed so the
# server itself only needs the protobuf runtime (see the note at the top of client.proto).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
python=${PYTHON:-"$root/.venv/bin/python"}
[ -x "$python" ] || python=python3
# Generated from the project root, so the descriptor is registered as "httpstream/protocol/client.proto" in package
# httpstream.protocol: centrifuge-python registers its own "client.proto" (centrifugal.centrifuge.protocol) in the
# same global pool, and both must load in one process. Package names never reach the wire.
cd "$root"
exec "$python" -m grpc_tools.protoc -I . --python_out=. --pyi_out=. httpstream/protocol/client.proto
