//! The metering service against real stores: SQLite (a temporary file) and PostgreSQL (a fresh database per test,
//! skipped loudly when PostgreSQL is absent and CI is not set).

#[macro_use]
extern crate gw_test_support;

use std::sync::Arc;
use std::time::Duration;

use gw_core::{InstanceId, LimitOverrides, SubscriptionId, Tier, Timestamp, UsageRecordType};
use gw_metering::{Event, Metering};
use gw_store::{Actor, NewInstance, NewSubscription, Store, UsageFilter, Visibility};

async fn tenant(store: &Arc<dyn Store>, monthly_messages: i64) -> (SubscriptionId, InstanceId, InstanceId) {
    let sub = store
        .create_subscription(
            NewSubscription {
                name: format!("tenant-{}", SubscriptionId::new()),
                tier: Tier::Pro,
                max_instances: 10,
                monthly_messages,
                limit_overrides: LimitOverrides::default(),
            },
            &Actor::system(),
        )
        .await
        .expect("subscription");
    let mut instances = Vec::new();
    for name in ["one", "two"] {
        let instance = store
            .create_instance(
                NewInstance {
                    name: name.into(),
                    subscription_id: sub.id,
                    created_by_id: None,
                    driver: gw_core::DriverKind::Sandbox,
                    settings: serde_json::json!({}),
                },
                &Actor::system(),
            )
            .await
            .expect("instance");
        instances.push(instance.id);
    }
    (sub.id, instances[0], instances[1])
}

/// 8 tasks record 2,000 events each across two instances; a graceful stop of the flusher (the shutdown path)
/// leaves exact counts in `message_stats` and `usage_records`.
async fn a_burst_then_shutdown_leaves_exact_counts(store: Arc<dyn Store>) {
    let (sub, one, two) = tenant(&store, 1_000).await;
    let metering = Arc::new(Metering::new(store.clone()));
    let (stop, stopped) = tokio::sync::watch::channel(false);
    // A long period: the counts below reach the database through the shutdown flush, not a periodic one.
    let flusher = metering.clone().spawn_flusher(Duration::from_secs(3600), stopped);
    let tasks: Vec<_> = (0..8)
        .map(|task| {
            let metering = metering.clone();
            tokio::spawn(async move {
                for i in 0..2_000u32 {
                    let instance = if (task + i) % 2 == 0 { one } else { two };
                    let event = match i % 4 {
                        0 => Event::MessageSent,
                        1 => Event::MessageReceived,
                        2 => Event::MessageFailed,
                        _ => Event::ApiCall,
                    };
                    metering.record(sub, instance, event);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("recorder");
    }
    stop.send(true).expect("stop");
    flusher.await.expect("flusher");

    let today = Timestamp::now().date();
    let mut totals = [0i64; 4];
    for instance in [one, two] {
        let rows = store.list_message_stats(instance, today, today).await.expect("stats");
        assert_eq!(rows.len(), 1, "one row per instance and day");
        let row = &rows[0];
        assert_eq!(
            (row.messages_sent, row.messages_received, row.messages_failed, row.api_calls),
            (2_000, 2_000, 2_000, 2_000),
            "each instance got half of each kind"
        );
        for (total, value) in totals.iter_mut().zip([row.messages_sent, row.messages_received, row.messages_failed]) {
            *total += value;
        }
        totals[3] += row.api_calls;
    }
    assert_eq!(totals, [4_000; 4]);
    let usage = store
        .list_usage(UsageFilter {
            subscription_id: sub,
            instance_id: Some(one),
            period: Some(Timestamp::now().period()),
        })
        .await
        .expect("usage");
    let counts: Vec<(UsageRecordType, i64)> = usage.iter().map(|r| (r.record_type, r.count)).collect();
    assert_eq!(
        counts,
        vec![
            (UsageRecordType::ApiCalls, 2_000),
            (UsageRecordType::MessagesReceived, 2_000),
            (UsageRecordType::MessagesSent, 2_000)
        ],
        "failed sends are not usage"
    );
    assert_eq!(metering.stats().flushes, 1);
}

/// A second flush adds to the rows (upserts), and counts of an instance deleted before the flush are dropped
/// without holding back the others.
async fn flushes_accumulate_and_deleted_instances_do_not_block(store: Arc<dyn Store>) {
    let (sub, one, two) = tenant(&store, 1_000).await;
    let metering = Metering::new(store.clone());
    metering.record(sub, one, Event::MessageSent);
    metering.flush().await.expect("first flush");
    metering.record(sub, one, Event::MessageSent);
    metering.record(sub, two, Event::MessageSent);
    store.delete_instance(Visibility::All, two, &Actor::system()).await.expect("delete");
    let flushed = metering.flush().await.expect("second flush");
    assert_eq!(flushed.stat_rows, 2);
    let today = Timestamp::now().date();
    let rows = store.list_message_stats(one, today, today).await.expect("stats");
    assert_eq!(rows[0].messages_sent, 2);
    assert!(metering.stats().dropped_orphans >= 1);
    assert_eq!(metering.flush().await.expect("nothing left"), gw_metering::Flushed::default());
}

async fn store(database: &gw_test_support::TestDatabase) -> std::sync::Arc<dyn gw_store::Store> {
    database.store().await
}

on_both_backends!(store =>a_burst_then_shutdown_leaves_exact_counts, flushes_accumulate_and_deleted_instances_do_not_block,);
