"""``flin``: the command line. Options map 1:1 onto ``Config``; every option
can come from a ``FLIN_*`` environment variable.

Owns: the ``flin`` group (here), the options every command shares
(``common.py``) and one module per command family: ``server`` (start, stop,
status, keygen), ``data`` (get, set, ...), ``operate`` (stats, backup,
restore, compact, repair), ``reshard``, ``cluster`` (many hosts: create,
status, add-node, drain), ``bench``. May import every other package; none
imports it. Exit codes are in ``common.py``.
"""
from __future__ import annotations

import click

from . import bench, cluster, data, operate, reshard, server


@click.group(context_settings={"auto_envvar_prefix": "FLIN", "help_option_names": ["-h", "--help"]})
@click.version_option(package_name="flin")
def main() -> None:
    """Flin: a persistent, sharded key-value store."""


for _command in (*server.COMMANDS, *data.COMMANDS, *operate.COMMANDS, *reshard.COMMANDS,
                 *cluster.COMMANDS, bench.bench):
    main.add_command(_command)
