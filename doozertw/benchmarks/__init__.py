"""The side-by-side cluster benchmark (``python -m doozertw.bench --cluster``).

- ``stats``: PURE. samples, percentiles, rows, the table with ratios;
- ``cluster``: the command line, a local 3-node doozertw cluster and the
  workloads over the doozer protocol;
- ``etcd``: a local 3-node etcd cluster and the same workloads over etcd's
  native gRPC API (hand-encoded protobuf messages on ``grpcio``);
- ``failover``: ``--failover``, rounds that kill or pause the leader of
  either cluster under a light write load and measure the write stall.
"""
