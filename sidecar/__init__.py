"""The per-node sidecar: reads its node's load, serves it to Prometheus and pushes it to the
control plane."""
