#!/usr/bin/env python
"""Producer and consumer on one connection at the same time.

The handler consumes what the client sends while a producer thread sends the
time every second on the same connection: ``send`` is thread-safe and does not
wait for ``recv``. Try it with ``python -m transports connect ws://localhost:8765``.
"""

import datetime
import os
import threading

from transports.threaded import ConnectionClosed, serve

PORT = int(os.environ.get("PORT", "8765"))


def producer(websocket, stop):
    while not stop.wait(1.0):
        try:
            websocket.send(f"the time is {datetime.datetime.now():%H:%M:%S}")
        except ConnectionClosed:
            return


def handler(websocket):
    stop = threading.Event()
    thread = threading.Thread(target=producer, args=(websocket, stop), daemon=True)
    thread.start()
    try:
        for message in websocket:  # the consumer
            print(f"< {message}", flush=True)
            websocket.send(f"got {message!r}")
    finally:
        stop.set()
        thread.join()


def main():
    with serve(handler, "localhost", PORT) as server:
        print(f"listening on ws://localhost:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
