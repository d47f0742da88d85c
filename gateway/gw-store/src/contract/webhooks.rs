//! The contract of webhooks: endpoint configuration, and the delivery outbox (claims, leases, disabling, replay).

use std::sync::Arc;

use gw_core::{InstanceId, Timestamp};

use super::fixtures::{actor, at, instance, subscription};
use crate::*;

pub async fn webhook_config_crud_and_counters(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let other = instance(&store, sub.id, "other").await;
    let created = store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id: inst.id,
                url: "https://hooks.example.com/wa".into(),
                events: vec![
                    gw_core::EventSelector::Only(gw_core::EventType::MessageReceived),
                    gw_core::EventSelector::Only(gw_core::EventType::MessageStatus),
                ],
                secret: "whsec_c2VjcmV0".into(),
            },
            &actor(),
        )
        .await
        .expect("create");
    assert_eq!(created.secret.expose(), "whsec_c2VjcmV0");
    assert_eq!(store.get_webhook_config(inst.id, created.id).await.expect("read"), created);
    assert!(store.get_webhook_config(other.id, created.id).await.expect_err("scoped").is_not_found());

    let updated = store
        .update_webhook_config(
            inst.id,
            created.id,
            WebhookConfigPatch {
                events: Some(vec![gw_core::EventSelector::All]),
                secret: Some("whsec_bmV3".into()),
                ..Default::default()
            },
            &actor(),
        )
        .await
        .expect("update");
    assert_eq!(
        (updated.events.clone(), updated.secret.expose().as_str(), updated.url.as_str()),
        (vec![gw_core::EventSelector::All], "whsec_bmV3", "https://hooks.example.com/wa")
    );

    let t1 = at(2026, 11, 5);
    store.record_webhook_outcome(created.id, DeliveryOutcome::Sent { at: t1 }).await.expect("sent");
    store.record_webhook_outcome(created.id, DeliveryOutcome::Sent { at: t1 }).await.expect("sent");
    store
        .record_webhook_outcome(created.id, DeliveryOutcome::Failed { at: t1, error: "HTTP 500".into() })
        .await
        .expect("failed");
    let counted = store.get_webhook_config(inst.id, created.id).await.expect("read");
    assert_eq!((counted.total_sent, counted.total_failed, counted.last_error.as_deref()), (2, 1, Some("HTTP 500")));
    assert_eq!((counted.last_sent_at, counted.last_failed_at), (Some(t1), Some(t1)));

    assert_eq!(store.list_webhook_configs(inst.id).await.expect("list").len(), 1);
    store.delete_webhook_config(inst.id, created.id, &actor()).await.expect("delete");
    assert!(store.list_webhook_configs(inst.id).await.expect("list").is_empty());
    let err = store.record_webhook_outcome(created.id, DeliveryOutcome::Sent { at: t1 }).await.expect_err("gone");
    assert!(err.is_not_found());
}

fn plus(t: Timestamp, seconds: i64) -> Timestamp {
    t.checked_add(chrono::Duration::seconds(seconds)).expect("in range")
}

async fn endpoint(store: &Arc<dyn Store>, instance_id: InstanceId, events: &[&str]) -> gw_core::WebhookConfig {
    store
        .create_webhook_config(
            NewWebhookConfig {
                instance_id,
                url: "https://hooks.example.com/wa".into(),
                events: events.iter().map(|e| e.parse().expect("an event selector")).collect(),
                secret: "whsec_c2VjcmV0".into(),
            },
            &actor(),
        )
        .await
        .expect("create webhook config")
}

fn event(instance_id: InstanceId, event_type: &str, at: Timestamp) -> NewWebhookEvent {
    NewWebhookEvent {
        instance_id,
        event_id: gw_core::EventId::new(),
        event_type: event_type.into(),
        payload: format!(r#"{{"type":"{event_type}"}}"#),
        at,
    }
}

fn completion(claimed: &ClaimedDelivery, at: Timestamp, code: u16, next: NextStep) -> DeliveryCompletion {
    DeliveryCompletion {
        id: claimed.id,
        claim_token: claimed.claim_token,
        config_id: claimed.config_id,
        at,
        status_code: Some(code),
        latency_ms: 12,
        error: (code >= 300).then(|| format!("HTTP {code}")),
        response_excerpt: Some("ok".into()),
        next,
    }
}

const WINDOW: chrono::Duration = chrono::Duration::days(5);

pub async fn webhook_outbox_enqueue_claim_complete(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let only_messages = endpoint(&store, inst.id, &["message.received"]).await;
    let everything = endpoint(&store, inst.id, &["*"]).await;
    let inactive = endpoint(&store, inst.id, &["*"]).await;
    store
        .update_webhook_config(
            inst.id,
            inactive.id,
            WebhookConfigPatch { is_active: Some(false), ..Default::default() },
            &actor(),
        )
        .await
        .expect("deactivate");
    let t0 = at(2026, 11, 5);

    let received = event(inst.id, "message.received", t0);
    assert_eq!(store.enqueue_webhook_event(&received).await.expect("enqueue").len(), 2);
    assert!(store.enqueue_webhook_event(&received).await.expect("again").is_empty(), "idempotent per event");
    assert_eq!(store.enqueue_webhook_event(&event(inst.id, "contact.updated", t0)).await.expect("enqueue").len(), 1);
    assert!(store.enqueue_webhook_event(&event(inst.id, "webhook.test", t0)).await.expect("enqueue").is_empty());
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 3);
    assert_eq!(store.next_webhook_due_at().await.expect("due"), Some(t0));

    let claimed = store.claim_webhook_deliveries(t0, plus(t0, 60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 3);
    assert!(claimed.iter().all(|c| c.url == "https://hooks.example.com/wa" && c.previous_secret.is_none()));
    assert!(store.claim_webhook_deliveries(t0, plus(t0, 60), 10).await.expect("claim").is_empty(), "leased");

    let failed = claimed.iter().find(|c| c.config_id == only_messages.id).expect("one for the first endpoint");
    let retry_at = plus(t0, 3600);
    let mut batch: Vec<_> = claimed
        .iter()
        .filter(|c| c.config_id == everything.id)
        .map(|c| completion(c, plus(t0, 1), 200, NextStep::Succeeded))
        .collect();
    batch.push(completion(failed, plus(t0, 1), 500, NextStep::RetryAt(retry_at)));
    let mut stale = completion(failed, plus(t0, 1), 200, NextStep::Succeeded);
    stale.claim_token = uuid::Uuid::now_v7();
    batch.push(stale);
    let report = store.complete_webhook_deliveries(&batch, WINDOW).await.expect("complete");
    assert_eq!((report.stale, report.disabled.len()), (1, 0));

    let sent = store.get_webhook_config(inst.id, everything.id).await.expect("read");
    assert_eq!((sent.total_sent, sent.total_failed, sent.failing_since), (2, 0, None));
    let failing = store.get_webhook_config(inst.id, only_messages.id).await.expect("read");
    assert_eq!((failing.total_sent, failing.total_failed), (0, 1));
    assert_eq!((failing.failing_since, failing.last_error.as_deref()), (Some(plus(t0, 1)), Some("HTTP 500")));
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 1);
    assert_eq!(store.next_webhook_due_at().await.expect("due"), Some(retry_at));

    assert!(store.claim_webhook_deliveries(plus(t0, 10), plus(t0, 70), 10).await.expect("claim").is_empty());
    let again = store.claim_webhook_deliveries(retry_at, plus(retry_at, 60), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].attempts), (failed.id, 1));

    // A dispatcher that dies holding a claim loses it when the lease runs out; its late completion is refused.
    let taken_over = store.claim_webhook_deliveries(plus(retry_at, 61), plus(retry_at, 120), 10).await.expect("claim");
    assert_eq!(taken_over.len(), 1);
    assert!(taken_over[0].taken_over && !again[0].taken_over, "a take-over is reported as one");
    let late = completion(&again[0], plus(retry_at, 62), 200, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[late], WINDOW).await.expect("late").stale, 1);
    let done = completion(&taken_over[0], plus(retry_at, 63), 204, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[done], WINDOW).await.expect("done").stale, 0);

    let log = store.list_webhook_deliveries(inst.id, only_messages.id, PageRequest::first(10)).await.expect("log");
    assert_eq!(log.items.len(), 1);
    let delivery = &log.items[0];
    assert_eq!(
        (delivery.status, delivery.attempts, delivery.event_id),
        (DeliveryStatus::Succeeded, 2, received.event_id)
    );
    let codes: Vec<_> = delivery.attempt_log.iter().map(|a| (a.attempt, a.status_code)).collect();
    assert_eq!(codes, vec![(1, Some(500)), (2, Some(204))]);
    assert_eq!(store.get_webhook_delivery(inst.id, only_messages.id, delivery.id).await.expect("get"), *delivery);
    let other = instance(&store, sub.id, "other").await;
    let hidden = store.get_webhook_delivery(other.id, only_messages.id, delivery.id).await.expect_err("scoped");
    assert!(hidden.is_not_found());
    assert!(
        store
            .list_webhook_deliveries(other.id, only_messages.id, PageRequest::first(10))
            .await
            .expect("l")
            .items
            .is_empty()
    );
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 0);
}

pub async fn webhook_endpoints_are_disabled_by_410_and_by_failing_too_long(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let gone = endpoint(&store, inst.id, &["*"]).await;
    let flaky = endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    store.enqueue_webhook_event(&event(inst.id, "message.received", t0)).await.expect("enqueue");
    store.enqueue_webhook_event(&event(inst.id, "message.sent", t0)).await.expect("enqueue");
    let claimed = store.claim_webhook_deliveries(t0, plus(t0, 60), 10).await.expect("claim");
    assert_eq!(claimed.len(), 4);

    let mut flaky_claims = claimed.iter().filter(|c| c.config_id == flaky.id);
    let first = flaky_claims.next().expect("first");
    let second = flaky_claims.next().expect("second");
    let gone_claim = claimed.iter().find(|c| c.config_id == gone.id).expect("gone");
    let report = store
        .complete_webhook_deliveries(
            &[
                completion(gone_claim, t0, 410, NextStep::Gone),
                completion(first, t0, 500, NextStep::RetryAt(plus(t0, 5))),
            ],
            WINDOW,
        )
        .await
        .expect("complete");
    assert_eq!(report.disabled.len(), 1);
    assert_eq!((report.disabled[0].config_id, report.disabled[0].subscription_id), (gone.id, sub.id));
    let disabled = store.get_webhook_config(inst.id, gone.id).await.expect("read");
    assert!(!disabled.is_active);
    assert_eq!(disabled.disabled_reason.as_deref(), Some("the endpoint answered 410 Gone"));

    // Still failing, but not for long enough.
    let almost = plus(t0, WINDOW.num_seconds() - 1);
    let report = store
        .complete_webhook_deliveries(&[completion(second, almost, 503, NextStep::RetryAt(plus(almost, 5)))], WINDOW)
        .await
        .expect("complete");
    assert!(report.disabled.is_empty());
    let later = plus(t0, WINDOW.num_seconds() + 10);
    let retry = store.claim_webhook_deliveries(later, plus(later, 60), 10).await.expect("claim");
    assert_eq!(retry.len(), 2, "the disabled endpoint's other delivery is not claimed");
    assert!(retry.iter().all(|c| c.config_id == flaky.id));
    let report = store
        .complete_webhook_deliveries(&[completion(&retry[0], later, 500, NextStep::RetryAt(plus(later, 5)))], WINDOW)
        .await
        .expect("complete");
    assert_eq!(report.disabled.len(), 1);
    assert!(report.disabled[0].reason.contains("every delivery failed since"), "{}", report.disabled[0].reason);
    let audit = store
        .list_audit(AuditFilter { subscription_id: Some(sub.id), ..Default::default() }, PageRequest::default())
        .await
        .expect("audit");
    let disables: Vec<_> = audit.items.iter().filter(|e| e.action == gw_core::AuditAction::WebhookDisable).collect();
    assert_eq!(disables.len(), 2);

    // Re-enabling clears the verdict and the failure run.
    let enabled = store
        .update_webhook_config(
            inst.id,
            flaky.id,
            WebhookConfigPatch { is_active: Some(true), ..Default::default() },
            &actor(),
        )
        .await
        .expect("enable");
    assert_eq!((enabled.is_active, enabled.disabled_reason, enabled.failing_since), (true, None, None));
}

pub async fn webhook_replay_and_secret_rotation(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    let config = endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    for minute in 0..3 {
        store.enqueue_webhook_event(&event(inst.id, "message.received", plus(t0, minute * 60))).await.expect("enqueue");
    }
    let claimed = store.claim_webhook_deliveries(plus(t0, 600), plus(t0, 660), 10).await.expect("claim");
    let batch: Vec<_> = claimed.iter().map(|c| completion(c, plus(t0, 600), 200, NextStep::Succeeded)).collect();
    store.complete_webhook_deliveries(&batch, WINDOW).await.expect("complete");
    let first = claimed.iter().min_by_key(|c| c.id).expect("three");

    let t1 = plus(t0, 700);
    let replayed = store.replay_webhook_delivery(inst.id, config.id, first.id, t1, &actor()).await.expect("replay");
    assert_eq!((replayed.status, replayed.next_attempt_at), (DeliveryStatus::Pending, t1));
    let other = instance(&store, sub.id, "other").await;
    let err = store.replay_webhook_delivery(other.id, config.id, first.id, t1, &actor()).await.expect_err("scoped");
    assert!(err.is_not_found());
    let again = store.claim_webhook_deliveries(t1, plus(t1, 60), 10).await.expect("claim");
    assert_eq!(again.len(), 1);
    assert_eq!((again[0].id, again[0].event_id), (first.id, first.event_id), "same delivery, same event id");

    // The range covers the two later events only; the first one is delivering and left alone.
    let count = store
        .replay_webhook_deliveries(inst.id, config.id, plus(t0, 30), plus(t0, 3600), t1, &actor())
        .await
        .expect("replay range");
    assert_eq!(count, 2);
    assert_eq!(store.webhook_queue_depth().await.expect("depth"), 3);

    let grace = plus(t1, 3600);
    let rotated =
        store.rotate_webhook_secret(inst.id, config.id, "whsec_bmV3".into(), grace, &actor()).await.expect("rotate");
    assert_eq!((rotated.secret.expose().as_str(), rotated.previous_secret_expires_at), ("whsec_bmV3", Some(grace)));
    let signed = store.claim_webhook_deliveries(t1, plus(t1, 60), 1).await.expect("claim");
    assert_eq!(signed[0].previous_secret.as_ref().map(|s| s.expose().as_str()), Some("whsec_c2VjcmV0"));
    let after_grace = store.claim_webhook_deliveries(plus(grace, 1), plus(grace, 60), 1).await.expect("claim");
    assert!(after_grace[0].previous_secret.is_none(), "the old secret stops signing after its grace period");
    assert!(
        store.rotate_webhook_secret(other.id, config.id, "whsec_eA".into(), grace, &actor()).await.is_err(),
        "scoped to the instance"
    );
}

pub async fn concurrent_webhook_claims_never_share_a_row(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    for _ in 0..200 {
        store.enqueue_webhook_event(&event(inst.id, "message.received", t0)).await.expect("enqueue");
    }
    let claimers: Vec<_> = (0..4)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let batch = store.claim_webhook_deliveries(t0, plus(t0, 600), 7).await.expect("claim");
                    if batch.is_empty() {
                        return mine;
                    }
                    mine.extend(batch.into_iter().map(|c| c.id));
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for claimer in claimers {
        all.extend(claimer.await.expect("claimer"));
    }
    let unique: std::collections::HashSet<_> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (200, 200), "every row claimed exactly once");
}

/// Short leases renewed by their owner: a renewal extends only rows still claimed under the caller's tokens, an
/// expired lease is claimable (and the claim says it took the row over), a renewed one is not, and a renewal with an
/// old token never takes a row back or extends the new owner's lease.
pub async fn webhook_leases_renew_only_their_own_rows(store: Arc<dyn Store>) {
    let sub = subscription(&store, 2).await;
    let inst = instance(&store, sub.id, "main").await;
    endpoint(&store, inst.id, &["*"]).await;
    let t0 = at(2026, 11, 5);
    for _ in 0..3 {
        store.enqueue_webhook_event(&event(inst.id, "message.received", t0)).await.expect("enqueue");
    }
    let ids = |claims: &[ClaimedDelivery]| -> std::collections::BTreeSet<_> { claims.iter().map(|c| c.id).collect() };
    let first = store.claim_webhook_deliveries(t0, plus(t0, 5), 2).await.expect("claim");
    let second = store.claim_webhook_deliveries(t0, plus(t0, 5), 10).await.expect("claim");
    assert_eq!((first.len(), second.len()), (2, 1));
    assert!(first.iter().chain(&second).all(|c| !c.taken_over), "pending rows are fresh claims, not take-overs");
    assert_ne!(first[0].claim_token, second[0].claim_token);
    assert!(store.renew_webhook_leases(&[], plus(t0, 10)).await.expect("renew").is_empty());

    let renewed = store.renew_webhook_leases(&[first[0].claim_token], plus(t0, 10)).await.expect("renew");
    assert_eq!(renewed.into_iter().collect::<std::collections::BTreeSet<_>>(), ids(&first), "exactly the own rows");

    // At t0 + 6 the second claim's lease has run out and the first's was renewed to t0 + 10.
    let t6 = plus(t0, 6);
    let taken = store.claim_webhook_deliveries(t6, plus(t6, 5), 10).await.expect("claim");
    assert_eq!(ids(&taken), ids(&second), "the expired lease is claimable, the renewed ones are not");
    assert!(taken[0].taken_over, "the claim reports the take-over");
    assert_ne!(taken[0].claim_token, second[0].claim_token);

    // The old owner renews too late: nothing changes hands and the new owner's lease (to t0 + 11) is not extended.
    let stale = store.renew_webhook_leases(&[second[0].claim_token], plus(t0, 600)).await.expect("renew");
    assert!(stale.is_empty(), "a taken-over row is not renewed: {stale:?}");
    let late = completion(&second[0], plus(t0, 7), 200, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[late], WINDOW).await.expect("complete").stale, 1);

    // At t0 + 12 both remaining leases have run out (t0 + 10 and t0 + 11): all three rows are taken over.
    let t12 = plus(t0, 12);
    let all = store.claim_webhook_deliveries(t12, plus(t12, 5), 10).await.expect("claim");
    assert_eq!(all.len(), 3, "the stale renewal did not extend the new owner's lease");
    assert!(all.iter().all(|c| c.taken_over));

    // A completed row is no longer the claimer's to renew.
    let done = completion(&all[0], t12, 200, NextStep::Succeeded);
    assert_eq!(store.complete_webhook_deliveries(&[done], WINDOW).await.expect("complete").stale, 0);
    let renewed = store.renew_webhook_leases(&[all[0].claim_token], plus(t12, 10)).await.expect("renew");
    assert_eq!(renewed.into_iter().collect::<std::collections::BTreeSet<_>>(), ids(&all[1..]));
    assert!(store.claim_webhook_deliveries(plus(t12, 9), plus(t12, 20), 10).await.expect("claim").is_empty());
}
