#!/usr/bin/env python
"""Hello server: receive a name, print it, answer, close (the tutorial's first server)."""

import os

from transports.threaded import serve

PORT = int(os.environ.get("PORT", "8765"))


def hello(websocket):
    name = websocket.recv()
    print(f"< {name}", flush=True)
    websocket.send("Message bien reçu")
    print("> Message bien reçu", flush=True)
    # Returning from the handler closes the connection (code 1000).


def main():
    with serve(hello, "localhost", PORT) as server:
        print(f"listening on ws://localhost:{server.port}", flush=True)
        server.serve_forever()  # Ctrl-C stops it


if __name__ == "__main__":
    main()
