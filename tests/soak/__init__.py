"""The soak (``make soak``): several sidecars on one Redis under chaos, then the books.

Not part of ``make test``: it runs for minutes. See ``python -m tests.soak --help``.
"""
