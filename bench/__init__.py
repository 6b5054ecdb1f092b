"""
Benchmarks for httpstream, each runnable as ``.venv/bin/python -m bench.<name>`` from the project root.

They start a real server (``twistd -n httpstream``, see L{tests.serverprocess}) and drive it from this process, so
the load generator and the server never share an interpreter. See bench/README.md.
"""
