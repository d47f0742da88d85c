//! Bounds automated replies per chat, across instances and tenants: the loop guard's depth counts hops within
//! one instance only, so two automated parties (two instances with echo plugins, or a tenant's echo against
//! another's auto-responder) can answer each other over WhatsApp forever, each message looking fresh.
//!
//! - **Rate and burst** per (instance, chat): a token bucket of plugin replies, `replies_per_chat_per_minute`
//!   refilled continuously up to `reply_burst_per_chat`. An instance is owned by one node at a time, so a node's
//!   buckets are the instance's.
//! - **Ping-pong**: an inbound message from a chat that arrives within `ping_pong_window` of the instance's last
//!   automated reply to that chat counts as one automated exchange; `ping_pong_exchanges` of them in a row mark
//!   the chat as a ping-pong, and its replies are discarded until the chat has been quiet (no inbound message)
//!   for the window. A person answering a bot does not answer within seconds dozens of times in a row.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use gw_core::InstanceId;

/// How automated replies per chat are bounded.
#[derive(Debug, Clone, Copy)]
pub struct ReplyGuardSettings {
    /// Plugin replies one instance may send to one chat per minute, on average.
    pub replies_per_chat_per_minute: u32,
    /// Plugin replies one instance may send to one chat at once (the bucket's size).
    pub reply_burst_per_chat: u32,
    /// An inbound message this soon after an automated reply to its chat counts as an automated exchange.
    pub ping_pong_window: Duration,
    /// Automated exchanges in a row that make a chat a ping-pong (0: never).
    pub ping_pong_exchanges: u32,
}

impl Default for ReplyGuardSettings {
    fn default() -> Self {
        Self {
            replies_per_chat_per_minute: 20,
            reply_burst_per_chat: 10,
            ping_pong_window: Duration::from_secs(5),
            ping_pong_exchanges: 10,
        }
    }
}

#[derive(Debug)]
struct ChatState {
    tokens: f64,
    refilled: Instant,
    last_reply: Option<Instant>,
    exchanges: u32,
    ping_pong: bool,
}

/// What the guard allows of a verdict's replies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    /// This many of the replies may be sent (the rest are over the chat's rate).
    Allowed(usize),
    /// None: the chat is a ping-pong between automated parties (`exchanges` in a row).
    PingPong { exchanges: u32 },
}

pub(crate) struct ReplyGuard {
    settings: ReplyGuardSettings,
    chats: moka::sync::Cache<(InstanceId, String), Arc<Mutex<ChatState>>>,
}

impl ReplyGuard {
    pub(crate) fn new(settings: ReplyGuardSettings) -> Self {
        Self {
            settings,
            chats: moka::sync::Cache::builder().max_capacity(1_000_000).time_to_idle(Duration::from_secs(600)).build(),
        }
    }

    fn chat(&self, instance: InstanceId, chat: &str) -> Arc<Mutex<ChatState>> {
        let burst = f64::from(self.settings.reply_burst_per_chat);
        self.chats.get_with((instance, chat.to_owned()), || {
            Arc::new(Mutex::new(ChatState {
                tokens: burst,
                refilled: Instant::now(),
                last_reply: None,
                exchanges: 0,
                ping_pong: false,
            }))
        })
    }

    /// An inbound message from `chat` arrived: counts an automated exchange, or ends a run of them.
    pub(crate) fn inbound(&self, instance: InstanceId, chat: &str) {
        // Only chats this instance has answered automatically can be in a ping-pong.
        let Some(state) = self.chats.get(&(instance, chat.to_owned())) else { return };
        let Ok(mut state) = state.lock() else { return };
        let now = Instant::now();
        let prompt = state.last_reply.is_some_and(|at| now.duration_since(at) <= self.settings.ping_pong_window);
        if prompt {
            state.exchanges = state.exchanges.saturating_add(1);
        } else {
            state.exchanges = 0;
            state.ping_pong = false;
        }
        if self.settings.ping_pong_exchanges > 0 && state.exchanges >= self.settings.ping_pong_exchanges {
            state.ping_pong = true;
        }
    }

    /// Takes up to `wanted` replies to `chat` from its budget.
    pub(crate) fn admit(&self, instance: InstanceId, chat: &str, wanted: usize) -> Admission {
        let state = self.chat(instance, chat);
        let Ok(mut state) = state.lock() else { return Admission::Allowed(0) };
        if state.ping_pong {
            // Quiet replies keep it a ping-pong: the other party's next prompt answer counts on.
            return Admission::PingPong { exchanges: state.exchanges };
        }
        let now = Instant::now();
        let per_second = f64::from(self.settings.replies_per_chat_per_minute) / 60.0;
        let burst = f64::from(self.settings.reply_burst_per_chat);
        state.tokens = (state.tokens + now.duration_since(state.refilled).as_secs_f64() * per_second).min(burst);
        state.refilled = now;
        let allowed = (state.tokens.floor() as usize).min(wanted);
        state.tokens -= allowed as f64;
        if allowed > 0 {
            state.last_reply = Some(now);
        }
        Admission::Allowed(allowed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chats_replies_are_bounded_by_burst_then_rate() {
        let guard = ReplyGuard::new(ReplyGuardSettings {
            replies_per_chat_per_minute: 60,
            reply_burst_per_chat: 3,
            ..ReplyGuardSettings::default()
        });
        let instance = InstanceId::new();
        assert_eq!(guard.admit(instance, "a", 2), Admission::Allowed(2));
        assert_eq!(guard.admit(instance, "a", 5), Admission::Allowed(1));
        assert_eq!(guard.admit(instance, "a", 1), Admission::Allowed(0), "the burst is spent");
        assert_eq!(guard.admit(instance, "b", 3), Admission::Allowed(3), "another chat has its own");
        assert_eq!(guard.admit(InstanceId::new(), "a", 3), Admission::Allowed(3), "another instance too");
    }

    #[test]
    fn prompt_answers_to_automated_replies_in_a_row_are_a_ping_pong() {
        let guard = ReplyGuard::new(ReplyGuardSettings {
            replies_per_chat_per_minute: 6_000,
            reply_burst_per_chat: 100,
            ping_pong_window: Duration::from_secs(60),
            ping_pong_exchanges: 4,
        });
        let instance = InstanceId::new();
        guard.inbound(instance, "bot");
        for _ in 0..3 {
            assert_eq!(guard.admit(instance, "bot", 1), Admission::Allowed(1));
            guard.inbound(instance, "bot");
        }
        assert_eq!(guard.admit(instance, "bot", 1), Admission::Allowed(1), "three exchanges are not yet a ping-pong");
        guard.inbound(instance, "bot");
        assert_eq!(guard.admit(instance, "bot", 1), Admission::PingPong { exchanges: 4 });
        assert_eq!(guard.admit(instance, "person", 1), Admission::Allowed(1), "other chats are unaffected");
    }
}
