"""Transports: the bytes of each way a client connects (http_stream, emulation, and later SSE and WebSocket)."""
