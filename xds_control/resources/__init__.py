"""Builders for the Envoy resources of one snapshot, one file per xDS type.

Each builder is a pure function of the validated config (and, for routes and endpoints,
the per-model view of the fleet that :mod:`xds_control.snapshot` derives).
"""
