"""Keyword auto-responder, the Python port of plugins/keyword-responder (same config, same behaviour): an inbound
message that matches a rule gets the rule's reply; the message itself is delivered unchanged.

Config: {"rules": [{"keywords": ["price"], "reply": "Our prices: ...", "match": "word"}], "case_sensitive": false,
"all_matches": false, "reply_to_outbound": false}. `match` is `word` (default), `contains` or `exact`.
"""

import json

import wit_world
from wit_world.imports import config, log
from wit_world.imports.types import Action_Continue, Direction, MessageEvent, Reply, Verdict


def _pass() -> Verdict:
    return Verdict(action=Action_Continue(), replies=[])


def _words(text: str) -> list[str]:
    # Runs of letters and digits, as in the Rust plugin (`char::is_alphanumeric`).
    out, word = [], []
    for c in text:
        if c.isalnum():
            word.append(c)
        elif word:
            out.append("".join(word))
            word = []
    if word:
        out.append("".join(word))
    return out


def _matches(text: str, keyword: str, mode: str) -> bool:
    if not keyword:
        return False
    if mode == "exact":
        return text.strip() == keyword
    if mode == "contains":
        return keyword in text
    return keyword in _words(text)


class WitWorld(wit_world.WitWorld):
    def handle(self, event: MessageEvent) -> Verdict:
        if event.text is None:
            return _pass()
        try:
            settings = json.loads(config.get())
        except ValueError as error:
            log.write(log.Level.ERROR, f"config is not JSON: {error}")
            return _pass()
        # Normally only messages from the outside world are answered.
        if event.direction != Direction.INBOUND and not settings.get("reply_to_outbound", False):
            return _pass()
        case_sensitive = settings.get("case_sensitive", False)

        def fold(s: str) -> str:
            return s if case_sensitive else s.lower()

        text = fold(event.text)
        replies = []
        for rule in settings.get("rules", []):
            mode = rule.get("match", "word")
            if any(_matches(text, fold(str(k)), mode) for k in rule.get("keywords", [])):
                replies.append(Reply(text=str(rule["reply"])))
                if not settings.get("all_matches", False):
                    break
        if replies:
            log.write(log.Level.INFO, f"matched {len(replies)} rule(s)")
        return Verdict(action=Action_Continue(), replies=replies)
