"""envoy-llm-fleet: the `fleet` command and the local launcher."""

__version__ = "0.1.0"
