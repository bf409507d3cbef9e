"""doozertw: a highly available, strongly consistent store for small, critical data."""

# The one version number: setup.py reads it from this file (without
# importing the package), `doozer -v`, /health, /metrics' doozer_build_info
# and /ctl/node/<name>/version show it. CHANGELOG.md has a section for it.
__version__ = "0.2.0"
