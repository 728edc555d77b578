"""Shared, dependency-light core of the ORPO dashboard: run config, dataset readers,
metric names, wire protocol, pitfall detectors and the `orpo-dash` command line. Imports neither
torch, the trainer nor the web server; only the command line reaches them, lazily."""
