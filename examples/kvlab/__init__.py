"""kvlab: a key-value lab system rebuilt on doozertw (a worked example).

kvlab was first built on ZooKeeper: coordinator servers elect a master;
data nodes register ephemerally in replica groups; the master names one
primary per group; clients hash keys over the groups and follow the
primaries. Here every one of those coordination steps is a doozertw
primitive (leases, watches, transactions and the ``doozertw.client``
recipes). See README.md in this directory.

Pure parts (no reactor, no sockets): ``layout`` (paths), ``hashring``
(consistent hashing), ``placement`` (primary choice), ``kvproto`` (the
data nodes' line protocol and bounded store). Edges: ``server`` and
``lineclient`` (the line protocol on Twisted), ``coordinator``,
``datanode``, ``kvclient`` and ``run_demo``.
"""
