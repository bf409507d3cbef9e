"""Packaging for doozertw.

The twistd plugin lives in the top-level ``twisted/plugins/`` (no
``__init__.py`` there: ``twisted.plugins`` is Twisted's namespace) and the web
view's static files in the top-level ``web/``; both are shipped as package
data so an installed copy (``pip install .``) finds them from any directory.
"""

from setuptools import find_packages, setup

setup(
    name="doozertw",
    version="0.1.0",
    description="A highly available, strongly consistent store for small, critical data "
                "(doozer-compatible, on Twisted)",
    python_requires=">=3.11",
    packages=find_packages(include=["doozertw", "doozertw.*"]) + ["twisted.plugins", "doozertw_web"],
    package_dir={"doozertw_web": "web"},
    package_data={
        "twisted": ["plugins/doozer_plugin.py"],
        "doozertw_web": ["*.html", "*.js", "*.css", "*.svg", "*.ico"],
    },
    include_package_data=False,
    install_requires=[
        # the reactor, endpoints, twistd, twisted.web; [tls]: pyOpenSSL and
        # service_identity for mutual TLS between peers (docs/security.md)
        "twisted[tls]>=24.3",
        # websocket events for the web view
        "autobahn>=23.1",
        # frozen message and config classes
        "attrs>=23.1",
        # cluster configuration files
        "pyyaml>=6.0",
        # doozer's wire format (proto2), parsed by the C (upb) implementation
        "protobuf>=4.21",
        # /metrics in Prometheus text format
        "prometheus_client>=0.17",
    ],
    extras_require={
        "test": [
            "pytest>=7",
            "pytest-twisted>=1.14",
            "pytest-timeout>=2.1",
            # rule-based state machines and parser fuzzing
            "hypothesis>=6.80",
            # in-memory HTTP testing of the web API
            "treq>=23.1",
            # drives the system's headless Chromium in the web view's browser test
            "selenium>=4.15",
            # the lint gate ./test.sh runs before pytest (pyproject.toml)
            "ruff>=0.5",
            "mypy>=1.10",
            # protobuf's types, for mypy over doozertw.wire
            "types-protobuf",
        ],
        # scripts/mutation.sh: mutation testing of the cores (docs/testing.md)
        "mutation": ["mutmut>=3.8"],
    },
    entry_points={
        "console_scripts": ["doozer = doozertw.cli:main"],
    },
)
