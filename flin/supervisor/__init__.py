"""The supervisor of one host's processes, and what it keeps on that host.

Owns: the supervisor (``supervisor.py``: fork, watch, restart with backoff,
stop), the data folder and its manifest (``datadir.py``), process helpers
(``processes.py``), logging (``logs.py``), ``--detach`` (``daemon.py``), the
Prometheus exporter process (``metrics.py``) and the checks before a start
(``bindcheck.py``). May import: the router and the shard worker (to run
them), the client (the exporter asks the router through it) and the shared
floor. ``datadir`` imports no process role, so offline tools may use it.

This package's ``__init__`` imports nothing, on purpose: ``flin.ops`` reads
the data folder through ``datadir`` without loading the router or the worker.
"""
