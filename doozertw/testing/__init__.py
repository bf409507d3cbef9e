"""Test support, the suite's one toolkit (tests import helpers from here or
use tests/conftest.py fixtures, never another ``test_*.py``): ports and
node processes (``node_process``, ``spawn``: the one ``twistd doozer``
spawner), the fault harness (``cluster_harness``, ``proxy``, ``nemesis``,
``soak``), histories, sequential models and the linearizability checker,
in-memory drivers (``simcluster``, ``simdisk``, ``memrun``, ``peerhub``,
``servers``, ``frontends``, ``web``), and ``hermetic``, the pytest plugin
that keeps the default run free of processes. Some modules need the test
extra (pytest-twisted, treq)."""
