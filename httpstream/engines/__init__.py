"""Engines: how publications (and later presence and history) travel between nodes."""
