"""Packaging and optimisation of registry versions: convert to ONNX, quantise, profile.

Each command is a thin mechanism over pure decisions: :mod:`.parity` (are two sets of outputs
close enough), :mod:`.timing` (percentiles of timed calls), :mod:`.op_profile` (operator time from
an ONNX Runtime profile). The mechanisms: :mod:`.converting`, :mod:`.quantizing`,
:mod:`.profiling`; the commands live in :mod:`modelyard.cli_optimize`. This package imports
nothing on its own, so the CLI can read :mod:`.defaults` without loading ONNX Runtime.
"""
