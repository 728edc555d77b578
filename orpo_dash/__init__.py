"""Shared, dependency-light core of the ORPO dashboard: run config, metric names, wire protocol,
pitfall detectors and the `orpo-dash` command line. Imports neither torch nor the web server."""
