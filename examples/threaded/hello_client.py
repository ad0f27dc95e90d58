#!/usr/bin/env python
"""Hello client: ask for a name, send it, print the server's answer."""

import os

from transports.threaded import connect

PORT = int(os.environ.get("PORT", "8765"))


def hello():
    with connect(f"ws://localhost:{PORT}") as websocket:
        name = input("What's your name? ")
        websocket.send(name)
        print(f"> {name}")
        answer = websocket.recv()
        print(f"< {answer}")


if __name__ == "__main__":
    hello()
