#!/usr/bin/env python
"""Echo server: send every message back to its sender, text as text, binary as binary."""

import os

from transports.threaded import serve

PORT = int(os.environ.get("PORT", "8765"))


def echo(websocket):
    for message in websocket:  # ends quietly when the client closes normally
        websocket.send(message)


def main():
    with serve(echo, "localhost", PORT) as server:
        print(f"listening on ws://localhost:{server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
