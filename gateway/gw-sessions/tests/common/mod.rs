//! Fixtures the engine's test files share.

use std::sync::Arc;

use gw_core::{DriverKind, Instance, LimitOverrides, Tier};
use gw_store::{Actor, NewInstance, NewSubscription, Store};
use serde_json::json;

pub async fn tenant(store: &Arc<dyn Store>, monthly_messages: i64) -> gw_core::Subscription {
    store
        .create_subscription(
            NewSubscription {
                name: format!("tenant-{}", gw_core::SubscriptionId::new()),
                tier: Tier::Pro,
                max_instances: 10,
                monthly_messages,
                limit_overrides: LimitOverrides::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription")
}

pub async fn new_instance(store: &Arc<dyn Store>, subscription: &gw_core::Subscription, name: &str) -> Instance {
    store
        .create_instance(
            NewInstance {
                name: name.into(),
                subscription_id: subscription.id,
                created_by_id: None,
                driver: DriverKind::Sandbox,
                settings: json!({}),
            },
            &Actor::system(),
        )
        .await
        .expect("instance")
}
