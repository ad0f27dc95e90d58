"""I/O for wscore: ``transports.threaded`` (blocking, threads) and ``transports.asyncio``.

Both offer ``serve(handler, host, port, **options)`` and ``connect(uri, **options)``
with the same options and the same connection surface. ``python -m transports``
runs the demo server and an interactive client.
"""
