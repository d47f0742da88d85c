"""A test plugin (not for tenants): it tries one thing a Python plugin must not be able to do, named by its config
(`{"probe": "time"}`), and replies with what it saw, so the host's tests can check the sandbox from the outside.
A probe that reaches WASI traps (the component's WASI imports are stubs that trap), which is also an answer."""

import json
import random

import wit_world
from wit_world.imports import clock, config
from wit_world.imports.types import Action_Continue, MessageEvent, Reply, Verdict


def _open() -> str:
    with open("/etc/passwd") as f:
        return f.read(16)


def _socket() -> str:
    import socket

    return str(socket.create_connection(("127.0.0.1", 9), timeout=1))


def _time() -> str:
    import time

    return str(time.time())


def _urandom() -> str:
    import os

    return os.urandom(4).hex()


PROBES = {
    "clock": lambda: str(clock.now()),
    "time": _time,
    "random": lambda: str(random.random()),
    "urandom": _urandom,
    "open": _open,
    "socket": _socket,
}


class WitWorld(wit_world.WitWorld):
    def handle(self, event: MessageEvent) -> Verdict:
        probe = json.loads(config.get())["probe"]
        try:
            seen = PROBES[probe]()
        except Exception as error:  # noqa: BLE001 - what it raised is the finding
            seen = f"raised {type(error).__name__}"
        return Verdict(action=Action_Continue(), replies=[Reply(text=f"{probe}={seen}")])
