//! Keyword auto-responder: an inbound message that matches a rule gets the rule's reply; the message itself is
//! delivered unchanged.
//!
//! Config: `{"rules": [{"keywords": ["price", "cost"], "reply": "Our prices: ...", "match": "word"}],
//! "case_sensitive": false, "all_matches": false, "reply_to_outbound": false}`. `match` is `word` (default: a whole word of the text),
//! `contains` (a substring) or `exact` (the whole text, trimmed). The first matching rule replies unless
//! `all_matches` is set.

use gateway_plugin_sdk::{Event, Plugin, Verdict, config, export_plugin, log};
use serde::Deserialize;

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    rules: Vec<Rule>,
    #[serde(default)]
    case_sensitive: bool,
    #[serde(default)]
    all_matches: bool,
    /// Also answer outbound messages (an echo bot, or a test of the host's loop guard).
    #[serde(default)]
    reply_to_outbound: bool,
}

#[derive(Deserialize)]
struct Rule {
    keywords: Vec<String>,
    reply: String,
    #[serde(default, rename = "match")]
    mode: Mode,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum Mode {
    #[default]
    Word,
    Contains,
    Exact,
}

struct KeywordResponder;

impl Plugin for KeywordResponder {
    fn handle(event: Event) -> Verdict {
        let Some(text) = event.text.as_deref() else { return Verdict::pass() };
        let config: Config = match config::json() {
            Ok(config) => config,
            Err(error) => {
                log::error(&error);
                return Verdict::pass();
            }
        };
        // Normally only messages from the outside world are answered.
        if !event.is_inbound() && !config.reply_to_outbound {
            return Verdict::pass();
        }
        let fold = |s: &str| if config.case_sensitive { s.to_owned() } else { s.to_lowercase() };
        let text = fold(text);
        let mut verdict = Verdict::pass();
        for rule in &config.rules {
            let hit = rule.keywords.iter().any(|keyword| matches(&text, &fold(keyword), rule.mode));
            if hit {
                verdict = verdict.with_reply(rule.reply.clone());
                if !config.all_matches {
                    break;
                }
            }
        }
        if !verdict.replies.is_empty() {
            log::info(&format!("matched {} rule(s)", verdict.replies.len()));
        }
        verdict
    }
}

fn matches(text: &str, keyword: &str, mode: Mode) -> bool {
    if keyword.is_empty() {
        return false;
    }
    match mode {
        Mode::Exact => text.trim() == keyword,
        Mode::Contains => text.contains(keyword),
        Mode::Word => text.split(|c: char| !c.is_alphanumeric()).any(|word| word == keyword),
    }
}

export_plugin!(KeywordResponder);
