//! The pipeline seam: every message event, inbound and outbound, passes one [`MessagePipeline`] before the engine
//! sends it or the dispatcher delivers it. The plugin host implements it; until a tenant binds plugins it is
//! [`PassThrough`].

use serde::{Deserialize, Serialize};

use crate::{Direction, InstanceId, MessageId, MessageKind, SubscriptionId, Timestamp};

/// Metadata of a media attachment; the bytes never enter the pipeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct MediaInfo {
    // Alphabetical: stored message payloads were written as sorted maps, and `MessageContent` keeps their bytes.
    pub file_name: Option<String>,
    pub mime_type: String,
    pub size_bytes: u64,
}

/// Where an outbound message came from. Plugin replies carry their depth so a chain cannot feed itself forever.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Origin {
    /// Received from WhatsApp.
    WhatsApp,
    /// Sent through the HTTP API.
    Api,
    /// Produced by a plugin's reply verdict while processing another message; `depth` counts the hops.
    PluginReply { depth: u8 },
}

impl Origin {
    /// The one-word form a stored message and its public shape carry: `whatsapp`, `api` or `plugin_reply:<depth>`.
    pub fn label(&self) -> std::borrow::Cow<'static, str> {
        match self {
            Origin::WhatsApp => "whatsapp".into(),
            Origin::Api => "api".into(),
            Origin::PluginReply { depth } => format!("plugin_reply:{depth}").into(),
        }
    }
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.label())
    }
}

/// A stored origin that is none of `whatsapp`, `api`, `plugin_reply:<depth>`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a message origin; expected whatsapp, api or plugin_reply:<depth>")]
pub struct ParseOriginError(pub String);

impl std::str::FromStr for Origin {
    type Err = ParseOriginError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "whatsapp" => Ok(Origin::WhatsApp),
            "api" => Ok(Origin::Api),
            _ => s
                .strip_prefix("plugin_reply:")
                .and_then(|depth| depth.parse().ok())
                .map(|depth| Origin::PluginReply { depth })
                .ok_or_else(|| ParseOriginError(s.to_owned())),
        }
    }
}

/// `Origin` as its label, for the public message (the pipeline's `MessageEvent` keeps the tagged form plugins see).
pub mod origin_label {
    use super::Origin;

    pub fn serialize<S: serde::Serializer>(origin: &Origin, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(origin)
    }
}

/// A message as the pipeline sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct MessageEvent {
    pub direction: Direction,
    pub subscription_id: SubscriptionId,
    pub instance_id: InstanceId,
    pub message_id: MessageId,
    /// The chat the message belongs to (a user or group JID).
    pub chat_jid: String,
    /// Who wrote it (for outbound: the instance's own JID, when known).
    pub sender: String,
    pub kind: MessageKind,
    /// Text, or a media caption.
    pub text: Option<String>,
    pub media: Option<MediaInfo>,
    pub timestamp: Timestamp,
    pub origin: Origin,
}

/// A message a plugin asks to send to the same chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub struct Reply {
    pub chat_jid: String,
    pub text: String,
    /// WhatsApp message id to quote, if any.
    pub quoted_message_id: Option<String>,
    /// The binding whose plugin asked for it: a reply the send path refuses is recorded on it.
    pub binding_id: Option<crate::PluginBindingId>,
}

/// What the pipeline decided about one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Disposition {
    /// Send (outbound) or deliver (inbound) this message, possibly rewritten.
    Deliver(MessageEvent),
    /// Do not send or deliver it.
    Drop { reason: String, by: Option<String> },
}

/// The result of running a message through the pipeline: its fate, plus any replies to send through the same
/// outbound path as an API send (same limits, quota and outbox).
#[derive(Debug, Clone, PartialEq)]
pub struct PipelineOutcome {
    pub disposition: Disposition,
    pub replies: Vec<Reply>,
}

impl PipelineOutcome {
    pub fn deliver(event: MessageEvent) -> Self {
        Self { disposition: Disposition::Deliver(event), replies: Vec::new() }
    }
}

/// Runs a message through the tenant's chain. Never fails: plugin errors are handled by each binding's failure
/// policy and recorded by the implementation.
#[async_trait::async_trait]
pub trait MessagePipeline: Send + Sync + std::fmt::Debug {
    async fn process(&self, event: MessageEvent) -> PipelineOutcome;
}

/// The pipeline when no plugin host is wired: every message passes unchanged.
#[derive(Debug, Clone, Copy, Default)]
pub struct PassThrough;

#[async_trait::async_trait]
impl MessagePipeline for PassThrough {
    async fn process(&self, event: MessageEvent) -> PipelineOutcome {
        PipelineOutcome::deliver(event)
    }
}

#[cfg(test)]
mod origin_tests {
    use super::Origin;

    #[test]
    fn origins_round_trip_through_their_label() {
        for origin in
            [Origin::WhatsApp, Origin::Api, Origin::PluginReply { depth: 0 }, Origin::PluginReply { depth: 3 }]
        {
            assert_eq!(origin.label().parse::<Origin>(), Ok(origin));
        }
        assert_eq!(Origin::PluginReply { depth: 2 }.to_string(), "plugin_reply:2");
        for bad in ["", "API", "plugin_reply", "plugin_reply:", "plugin_reply:x", "plugin_reply:256"] {
            assert!(bad.parse::<Origin>().is_err(), "{bad:?} must be refused");
        }
    }
}
