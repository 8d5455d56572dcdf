"""Cluster mode: many hosts, the topology in etcd.

Owns: the etcd client (``etcd.py``, over ``etcd3gw``), the topology
document and its compare-and-swap changes (``topology.py``), the mover
that brings a whole shard onto its node (``mover.py``), the node's
agent process that holds its lease, watches the topology and tells the
node's other processes through a file (``agent.py``; the file's format is
``flin.nodeview``, in the shared floor, which the router and the shard
worker read: they never talk to etcd, and the data path never waits on it).

May import: the shared floor (``config``, ``ring``, ``errors``,
``protocol``, ``nodeview``), ``etcd3gw``, and the client (the agent asks
other nodes' routers whether they see etcd; the mover drives a move
through them), and ``shardworker.encoding`` (the key layout the mover
writes, as ``MOVE_IMPORT`` does).
"""
