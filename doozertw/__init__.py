"""doozertw: a highly available, strongly consistent store for small, critical data."""

__version__ = "0.1.0"
