//! Opt-out handler. An inbound STOP (or UNSUBSCRIBE, or a configured word) marks the chat as opted out in the
//! plugin's key-value store and sends one confirmation; from then on every outbound message to that chat is
//! dropped, until the chat sends START (which sends one "resumed" note). Bind it in both directions.
//!
//! The confirmation itself is an outbound message that passes this same plugin: the chat's state is `pending`
//! until the confirmation (a plugin reply with exactly the confirmation text) has gone out once, then `confirmed`.
//! A repeated STOP sends nothing more.
//!
//! Config (all optional): `{"stop_words": ["STOP", "UNSUBSCRIBE"], "start_words": ["START"],
//! "confirmation": "...", "resumed": "..."}`. Words match the whole trimmed text, case-insensitively.

use gateway_plugin_sdk::{Event, Origin, Plugin, Verdict, config, export_plugin, kv, log};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    stop_words: Vec<String>,
    start_words: Vec<String>,
    confirmation: String,
    resumed: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            stop_words: vec!["STOP".into(), "UNSUBSCRIBE".into()],
            start_words: vec!["START".into()],
            confirmation: "You are unsubscribed and will receive no more messages. Reply START to resubscribe.".into(),
            resumed: "You are subscribed again.".into(),
        }
    }
}

const PENDING: &str = "pending";
const CONFIRMED: &str = "confirmed";

fn key(chat: &str) -> String {
    format!("optout:{chat}")
}

struct OptOut;

impl Plugin for OptOut {
    fn handle(event: Event) -> Verdict {
        let config: Config = match config::json() {
            Ok(config) => config,
            Err(error) => {
                log::error(&error);
                return Verdict::pass();
            }
        };
        let key = key(&event.chat_jid);
        let state = kv::get_string(&key);
        if event.is_inbound() {
            let word = event.text_or_empty().trim();
            let is = |words: &[String]| words.iter().any(|w| w.eq_ignore_ascii_case(word));
            if is(&config.stop_words) {
                if state.is_some() {
                    return Verdict::pass();
                }
                if let Err(error) = kv::set_string(&key, PENDING) {
                    log::error(&format!("cannot record opt-out: {error}"));
                    return Verdict::pass();
                }
                log::info("chat opted out");
                return Verdict::reply(config.confirmation);
            }
            if is(&config.start_words) && state.is_some() {
                kv::delete(&key);
                log::info("chat opted in again");
                return Verdict::reply(config.resumed);
            }
            return Verdict::pass();
        }
        match state.as_deref() {
            None => Verdict::pass(),
            Some(PENDING)
                if event.origin == Origin::PluginReply && event.text.as_deref() == Some(&config.confirmation) =>
            {
                if let Err(error) = kv::set_string(&key, CONFIRMED) {
                    log::error(&format!("cannot record confirmation: {error}"));
                }
                Verdict::pass()
            }
            Some(_) => Verdict::drop("the recipient opted out (STOP)"),
        }
    }
}

export_plugin!(OptOut);
