"""The load-report protocol between sidecars and the control plane (load.proto)."""
