//! Business-hours auto-responder: an inbound message that arrives while the business is closed gets one reply;
//! the chat gets no second reply until the business has opened and closed again (once per chat per closed
//! period). Messages are always delivered unchanged.
//!
//! Time zone: a fixed UTC offset in minutes (`utc_offset_minutes`), not a tz database name. That keeps the
//! component small and deterministic; a tenant whose zone changes with daylight saving updates the binding's
//! config twice a year.
//!
//! Config: `{"utc_offset_minutes": 60, "days": [1, 2, 3, 4, 5], "open": "09:00", "close": "17:00",
//! "reply": "We are closed ..."}`. `days` are ISO weekdays (1 = Monday .. 7 = Sunday). The time comes from the
//! host's clock capability.

use gateway_plugin_sdk::{Event, Origin, Plugin, Verdict, clock, config, export_plugin, kv, log};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(default)]
struct Config {
    utc_offset_minutes: i64,
    days: Vec<u8>,
    open: String,
    close: String,
    reply: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            utc_offset_minutes: 0,
            days: vec![1, 2, 3, 4, 5],
            open: "09:00".into(),
            close: "17:00".into(),
            reply: "Thanks for your message. We are closed now and will answer when we open.".into(),
        }
    }
}

const MINUTES_PER_DAY: i64 = 24 * 60;

fn parse_hhmm(s: &str) -> Option<i64> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (i64, i64) = (h.trim().parse().ok()?, m.trim().parse().ok()?);
    ((0..=24).contains(&h) && (0..60).contains(&m)).then_some(h * 60 + m)
}

/// ISO weekday of a local day number (days since 1970-01-01, a Thursday).
fn weekday(day: i64) -> u8 {
    ((day + 3).rem_euclid(7) + 1) as u8
}

struct Hours {
    days: Vec<u8>,
    open: i64,
    close: i64,
}

impl Hours {
    fn is_open(&self, local_minute: i64) -> bool {
        let day = local_minute.div_euclid(MINUTES_PER_DAY);
        let minute = local_minute.rem_euclid(MINUTES_PER_DAY);
        self.days.contains(&weekday(day)) && self.open <= minute && minute < self.close
    }

    /// The local minute the business next opens, if it ever does: it names the current closed period.
    fn next_opening(&self, local_minute: i64) -> Option<i64> {
        let today = local_minute.div_euclid(MINUTES_PER_DAY);
        (0..=7).map(|d| today + d).find_map(|day| {
            let opening = day * MINUTES_PER_DAY + self.open;
            (self.days.contains(&weekday(day)) && self.open < self.close && opening > local_minute).then_some(opening)
        })
    }
}

struct BusinessHours;

impl Plugin for BusinessHours {
    fn handle(event: Event) -> Verdict {
        if !event.is_inbound() || event.origin != Origin::Whatsapp {
            return Verdict::pass();
        }
        let config: Config = match config::json() {
            Ok(config) => config,
            Err(error) => {
                log::error(&error);
                return Verdict::pass();
            }
        };
        let (Some(open), Some(close)) = (parse_hhmm(&config.open), parse_hhmm(&config.close)) else {
            log::error("invalid config: open and close must be HH:MM");
            return Verdict::pass();
        };
        let hours = Hours { days: config.days, open, close };
        let local_minute = (clock::now_ms().div_euclid(60_000)) + config.utc_offset_minutes;
        if hours.is_open(local_minute) {
            return Verdict::pass();
        }
        let period = hours.next_opening(local_minute).map_or_else(|| "never".to_owned(), |m| m.to_string());
        let key = format!("closed:{}", event.chat_jid);
        if kv::get_string(&key).as_deref() == Some(period.as_str()) {
            return Verdict::pass();
        }
        if let Err(error) = kv::set_string(&key, &period) {
            // Without the marker the chat would be answered on every message: better not to answer at all.
            log::error(&format!("cannot record the reply: {error}"));
            return Verdict::pass();
        }
        log::info("closed: auto-reply sent");
        Verdict::reply(config.reply)
    }
}

export_plugin!(BusinessHours);
