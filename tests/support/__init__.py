"""What the test suites share: a real cluster (``cluster.py``), fault helpers
and storm/linearizability client processes (``faults.py``), hostile peers
(``hostile.py``) and racing client processes (``racers.py``)."""
