//! The contract of daily message statistics: they accumulate per instance and day.

use std::sync::Arc;

use gw_core::InstanceId;

use super::fixtures::{day, instance, subscription};
use crate::*;

pub async fn message_stats_accumulate_per_day(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let other = instance(&store, sub.id, "other").await;
    let delta = |instance_id, date, sent, received| MessageStatDelta {
        instance_id,
        date,
        messages_sent: sent,
        messages_received: received,
        messages_failed: 1,
        api_calls: 2,
    };
    store.add_message_stats(&[delta(inst.id, day(1), 3, 1), delta(inst.id, day(2), 1, 0)]).await.expect("batch 1");
    store.add_message_stats(&[delta(inst.id, day(1), 2, 4), delta(other.id, day(1), 9, 9)]).await.expect("batch 2");
    store.add_message_stats(&[]).await.expect("empty batch");

    let stats = store.list_message_stats(inst.id, day(1), day(30)).await.expect("list");
    let summary: Vec<_> =
        stats.iter().map(|s| (s.date, s.messages_sent, s.messages_received, s.messages_failed, s.api_calls)).collect();
    assert_eq!(summary, vec![(day(1), 5, 5, 2, 4), (day(2), 1, 0, 1, 2)]);
    assert_eq!(store.list_message_stats(inst.id, day(2), day(2)).await.expect("one day").len(), 1);

    let err = store.add_message_stats(&[delta(InstanceId::new(), day(1), 1, 1)]).await.expect_err("no instance");
    assert!(matches!(err, StoreError::NotFound { entity: "instance" }), "{err:?}");
}
