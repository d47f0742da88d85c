//! The contract every backend must keep, written once. A backend's test file instantiates it with
//! [`store_contract_tests!`], handing a function that makes a fresh, empty, migrated store per test. One file per
//! aggregate; `fixtures` holds what they build on.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use crate::Store;

mod api_keys;
mod audit;
mod cluster;
mod contacts;
mod fixtures;
mod general;
mod instances;
mod message_stats;
mod messages;
mod outbox;
mod plugins;
mod refresh_tokens;
mod sessions;
mod subscriptions;
mod usage;
mod users;
mod webhooks;

pub use api_keys::*;
pub use audit::*;
pub use cluster::*;
pub use contacts::*;
pub use fixtures::{instance, outbound, subscription};
pub use general::*;
pub use instances::*;
pub use message_stats::*;
pub use messages::*;
pub use outbox::*;
pub use plugins::*;
pub use refresh_tokens::*;
pub use sessions::*;
pub use subscriptions::*;
pub use usage::*;
pub use users::*;
pub use webhooks::*;

/// A fresh store for one test, and what to run once the test is done with it (drop a database, say).
pub struct TestStore {
    pub store: Arc<dyn Store>,
    cleanup: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl std::fmt::Debug for TestStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestStore").field("store", &self.store).finish_non_exhaustive()
    }
}

impl TestStore {
    pub fn new(store: Arc<dyn Store>, cleanup: impl Future<Output = ()> + Send + 'static) -> Self {
        Self { store, cleanup: Box::pin(cleanup) }
    }

    pub async fn finish(self) {
        drop(self.store);
        self.cleanup.await;
    }
}

/// Generates one `#[tokio::test]` per contract check, each on a store from `$make`: an async fn returning
/// `Option<TestStore>`, `None` when the backend is unavailable and the harness decided the run may skip it.
#[macro_export]
macro_rules! store_contract_tests {
    ($make:path) => {
        $crate::store_contract_tests!(@each $make;
            subscription_crud,
            subscription_delete_is_restricted_while_referenced,
            user_crud_and_email_uniqueness,
            user_scope_hides_other_tenants,
            instance_crud_and_scoped_name_uniqueness,
            instance_connection_updates,
            instance_delete_cascades_and_keeps_usage,
            api_key_crud_and_lookup_by_hash,
            message_stats_accumulate_per_day,
            contacts_upsert_merge_and_search,
            webhook_config_crud_and_counters,
            session_data_round_trip,
            usage_records_accumulate_per_period,
            audit_log_filters_and_order,
            pagination_is_stable_under_inserts,
            concurrent_slot_reservations_never_overshoot,
            concurrent_instance_creates_never_overshoot,
            concurrent_message_reservations_never_overshoot,
            message_quota_rolls_over_monthly,
            inactive_subscription_refuses_reservations,
            missing_rows_are_not_found,
            limit_overrides_round_trip,
            refresh_tokens_rotate_once_and_reuse_revokes_the_family,
            concurrent_refresh_rotations_have_one_winner,
            outbox_is_idempotent_and_ordered,
            concurrent_enqueues_charge_exactly_what_is_stored,
            sends_written_together_are_answered_as_alone,
            many_concurrent_sends_are_each_stored_and_charged_once,
            dropped_messages_are_charged_and_inactive_subscriptions_store_nothing,
            receipts_only_move_messages_forward,
            inbound_redelivery_is_recognised,
            contacts_merge_lid_and_phone_number,
            plugin_versions_activation_and_rollback,
            concurrent_plugin_creates_never_overshoot,
            concurrent_uploads_take_consecutive_versions,
            plugin_bindings_resolve_the_chain,
            plugin_failures_and_logs_are_recorded_and_bounded,
            plugin_kv_round_trip_and_limits,
            plugin_delete_cascades_and_reports_bound_instances,
            store_catalog_adds_the_subscriptions_limits,
            webhook_outbox_enqueue_claim_complete,
            webhook_endpoints_are_disabled_by_410_and_by_failing_too_long,
            webhook_replay_and_secret_rotation,
            concurrent_webhook_claims_never_share_a_row,
            webhook_leases_renew_only_their_own_rows,
            two_nodes_never_both_win_a_lease,
            leases_expire_by_the_database_clock,
            a_stale_epoch_is_refused_on_every_session_write,
            nodes_renew_and_release_only_their_own_leases,
            orphaned_instances_and_the_node_list,
            wake_ups_reach_subscribers,
            commands_are_taken_once_and_answered,
            a_stale_epoch_is_refused_on_driver_state_and_inbound_writes,
            a_stale_epoch_is_refused_on_contact_upserts,
            interrupted_pairings_end_disconnected_once,
            dead_nodes_and_old_commands_are_pruned_in_batches,
        );
    };
    (@each $make:path; $($name:ident),+ $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $name() {
                if let Some(test_store) = $make().await {
                    $crate::contract::$name(test_store.store.clone()).await;
                    test_store.finish().await;
                }
            }
        )+
    };
}
