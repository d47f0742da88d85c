//! What the contract's checks build on: a subscription, a user, an instance, a key, dates and an actor.

use std::sync::Arc;

use chrono::{NaiveDate, TimeZone, Utc};
use gw_core::{
    ApiKeyHash, ApiKeyId, DriverKind, Email, InstanceId, PasswordHash, SubscriptionId, Tier, Timestamp, UserId,
    UserRole,
};
use serde_json::json;

use crate::*;

pub(super) fn phc() -> PasswordHash {
    PasswordHash::from_phc("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA".into())
}

pub(super) fn email(local: &str) -> Email {
    Email::parse(&format!("{local}@example.com")).expect("valid email")
}

/// A subscription for up to `max_instances` instances (also for backend-specific tests).
pub async fn subscription(store: &Arc<dyn Store>, max_instances: i32) -> gw_core::Subscription {
    store
        .create_subscription(
            NewSubscription {
                name: "Acme".into(),
                tier: Tier::Starter,
                max_instances,
                monthly_messages: 1000,
                limit_overrides: Default::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("create subscription")
}

pub(super) async fn owner(store: &Arc<dyn Store>, subscription_id: SubscriptionId, local: &str) -> gw_core::User {
    store
        .create_user(
            NewUser {
                email: email(local),
                password: phc(),
                name: local.into(),
                role: UserRole::Owner,
                subscription_id: Some(subscription_id),
            },
            &Actor::system(),
        )
        .await
        .expect("create user")
}

/// A sandbox instance (also for backend-specific tests).
pub async fn instance(store: &Arc<dyn Store>, subscription_id: SubscriptionId, name: &str) -> gw_core::Instance {
    store
        .create_instance(
            NewInstance {
                name: name.into(),
                subscription_id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("create instance")
}

pub(super) fn new_key(instance_id: InstanceId, hash: &[u8]) -> NewApiKey {
    NewApiKey {
        id: ApiKeyId::new(),
        instance_id,
        name: "ci".into(),
        key_hash: ApiKeyHash::from_bytes(hash.to_vec()),
        permissions: vec!["messages:send".into()],
        expires_at: None,
        rate_limit: None,
    }
}

pub(super) fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).expect("valid date")
}

pub(super) fn at(year: i32, month: u32, d: u32) -> Timestamp {
    Timestamp::from(Utc.with_ymd_and_hms(year, month, d, 12, 0, 0).single().expect("valid time"))
}

pub(super) fn actor() -> Actor {
    Actor::user(UserId::new(), Some("203.0.113.7".into()))
}

/// A fresh WhatsApp-style id for an outbound message.
pub(super) fn wa_id() -> String {
    format!("3EB0{}", &uuid::Uuid::now_v7().simple().to_string().to_uppercase()[14..32])
}

/// An outbound text message to enqueue (also for backend-specific tests).
pub fn outbound(
    inst: &gw_core::Instance,
    chat: &str,
    text: &str,
    key: Option<&str>,
    hash: &[u8],
) -> NewOutboundMessage {
    NewOutboundMessage {
        id: gw_core::MessageId::new(),
        instance_id: inst.id,
        charge_to: inst.subscription_id,
        wa_message_id: wa_id(),
        chat_jid: chat.into(),
        kind: gw_core::MessageKind::Text,
        content: gw_core::MessageContent::text(),
        text: Some(text.into()),
        quoted_message_id: None,
        media: None,
        idempotency_key: key.map(Into::into),
        request_hash: key.map(|_| hash.to_vec()),
        origin: gw_core::Origin::Api,
        dropped_reason: None,
        at: Timestamp::now(),
    }
}
