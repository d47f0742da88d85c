//! The contract of usage records: they accumulate per period.

use std::sync::Arc;

use gw_core::{UsagePeriod, UsageRecordType};

use super::fixtures::{at, instance, subscription};
use crate::*;

pub async fn usage_records_accumulate_per_period(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let nov = UsagePeriod::new(2026, 11).expect("valid");
    let dec = UsagePeriod::new(2026, 12).expect("valid");
    let delta = |instance_id, record_type, period, count| UsageDelta {
        subscription_id: sub.id,
        instance_id,
        record_type,
        period,
        count,
        at: at(2026, 11, 9),
    };
    for _ in 0..2 {
        store
            .add_usage(&[
                delta(Some(inst.id), UsageRecordType::MessagesSent, nov, 5),
                delta(Some(inst.id), UsageRecordType::ApiCalls, nov, 1),
                delta(None, UsageRecordType::MessagesSent, nov, 2),
                delta(Some(inst.id), UsageRecordType::MessagesSent, dec, 1),
            ])
            .await
            .expect("add");
    }
    let all =
        store.list_usage(UsageFilter { subscription_id: sub.id, instance_id: None, period: None }).await.expect("all");
    assert_eq!(all.len(), 4, "one row per (subscription, instance, type, period): {all:?}");
    let nov_inst = store
        .list_usage(UsageFilter { subscription_id: sub.id, instance_id: Some(inst.id), period: Some(nov) })
        .await
        .expect("filtered");
    let counts: Vec<_> = nov_inst.iter().map(|r| (r.record_type, r.count)).collect();
    assert_eq!(counts, vec![(UsageRecordType::ApiCalls, 2), (UsageRecordType::MessagesSent, 10)]);
    let unattributed: Vec<_> = all.iter().filter(|r| r.instance_id.is_none()).map(|r| r.count).collect();
    assert_eq!(unattributed, vec![4]);
}
