"""Tools that operate on a cluster's data: ``backup`` (online, through a
``Client``), ``restore`` and ``repair`` (offline, on a stopped data folder),
the dump format (``dumpfile.py``) and LevelDB log surgery (``logsurgery.py``).

May import: ``flin.supervisor.datadir`` (the data folder and its manifest)
and the shared floor. Never the router or the shard worker: these tools must
work on a folder no process serves. Imports nothing here, on purpose.
"""
