"""Test support: histories, sequential models and the linearizability
checker used to validate the cluster under faults."""
