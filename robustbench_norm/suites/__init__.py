"""Orchestration: a suite file becomes a validated job matrix (``suite``), its jobs run on some
executor (``execute``, ``workers``) and their outcomes land in one SQLite store (``store``),
which several processes can share (``job_claims``)."""
