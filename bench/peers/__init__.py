"""
What a Python user would pick instead of httpstream, as small servers speaking the fan-out benchmark's wire subset
(see bench/baseline.py for the subset). Installed by the ``bench`` extra, never by the runtime dependencies:
``pip install -e '.[bench]'``. Each prints ``listening on http://127.0.0.1:PORT`` once it serves.
"""
