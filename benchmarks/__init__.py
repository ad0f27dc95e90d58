"""End-to-end benchmarks for wscore transports against peer WebSocket libraries.

Run ``python -m benchmarks --help``.
"""
