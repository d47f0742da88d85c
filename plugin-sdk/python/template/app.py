"""A gateway plugin in Python: copy this directory, change `handle`, build it with
    plugin-sdk/python/build.sh <this directory> plugin.wasm
The event and the verdict are the types of plugin-sdk/wit/plugin.wit, as componentize-py generates them (run
`componentize-py -d plugin-sdk/wit -w plugin bindings out/` to read them): dataclasses with snake_case fields,
enums (`Direction.INBOUND`), `None` for an absent option, one class per variant case (`Action_Drop("reason")`).
"""

import json

import wit_world
from wit_world.imports import clock, config, kv, log
from wit_world.imports.types import Action_Continue, Direction, MessageEvent, Reply, Verdict
from componentize_py_types import Err


class WitWorld(wit_world.WitWorld):
    def handle(self, event: MessageEvent) -> Verdict:
        settings = json.loads(config.get() or "{}")
        if event.direction != Direction.INBOUND or not event.text:
            return Verdict(action=Action_Continue(), replies=[])
        # The world's clock is the only clock: Python's `time` functions trap in a plugin.
        seen = kv.get(event.chat_jid)
        try:
            kv.set(event.chat_jid, str(clock.now()).encode())
        except Err as refused:  # a kv limit: the call goes on
            log.write(log.Level.WARN, f"kv: {refused.value}")
        log.write(log.Level.INFO, f"message from {event.sender}; seen before: {seen is not None}")
        greeting = settings.get("greeting")
        replies = [Reply(text=greeting)] if seen is None and greeting else []
        # Other actions: Action_Drop("reason"), Action_Modify("new text").
        return Verdict(action=Action_Continue(), replies=replies)
