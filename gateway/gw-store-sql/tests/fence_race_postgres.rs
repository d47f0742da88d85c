//! Fenced writes against a take-over in flight, on PostgreSQL. A take-over is held open (its `UPDATE` of the
//! instance row done, not committed) while a write with the old owner's epoch starts: the write must wait for the
//! take-over and then be refused, never pass its check on a snapshot taken before the take-over committed and land
//! after it. Without the row lock in the fence (`FOR SHARE`), each write here returns at once and succeeds.

use std::sync::Arc;
use std::time::Duration;

use gw_core::{InstanceId, MessageStatus, NodeId, Timestamp};
use gw_store::contract::{instance, outbound, subscription};
use gw_store::{ContactUpsert, Enqueued, NewInboundMessage, OwnerEpoch, Store, StoreError, StoreResult, WaStateWrite};
use gw_store_sql::testing::PgTestDatabase;
use gw_store_sql::{OpenOptions, PgStore};
use sqlx::{Connection, PgConnection};

const WAIT: Duration = Duration::from_secs(10);

/// A write made with a (soon stale) epoch.
type Write = Box<dyn FnOnce(OwnerEpoch) -> Pending + Send>;
type Pending = std::pin::Pin<Box<dyn std::future::Future<Output = StoreResult<()>> + Send>>;

/// Holds a take-over of `id` open on its own connection, starts `write` with the current epoch, checks that it
/// waits, commits the take-over, and checks that the write was refused.
async fn write_waits_for_the_takeover(database: &PgTestDatabase, id: InstanceId, what: &str, write: Write) {
    let current: i64 = {
        let mut connection = PgConnection::connect(database.url()).await.expect("connect");
        sqlx::query_scalar("SELECT owner_epoch FROM instances WHERE id = $1")
            .bind(id.as_uuid())
            .fetch_one(&mut connection)
            .await
            .expect("epoch")
    };
    let mut takeover = PgConnection::connect(database.url()).await.expect("connect");
    sqlx::query("BEGIN").execute(&mut takeover).await.expect("begin");
    // What `acquire_lease` does, left uncommitted.
    let updated = sqlx::query(
        "UPDATE instances SET owner_node = $2, owner_epoch = owner_epoch + 1, \
         lease_expires_at = (SELECT now_ms FROM db_clock) + 60000 WHERE id = $1",
    )
    .bind(id.as_uuid())
    .bind(NodeId::new().as_uuid())
    .execute(&mut takeover)
    .await
    .expect("take over");
    assert_eq!(updated.rows_affected(), 1);

    let mut task = tokio::spawn(write(OwnerEpoch::new(current)));
    let started = tokio::time::Instant::now();
    loop {
        tokio::select! {
            result = &mut task => panic!("{what}: the stale write did not wait for the take-over: {result:?}"),
            () = tokio::time::sleep(Duration::from_millis(20)) => {}
        }
        if database.sessions_waiting_on_locks().await > 0 {
            break;
        }
        assert!(started.elapsed() < WAIT, "{what}: the write neither waited nor finished");
    }
    sqlx::query("COMMIT").execute(&mut takeover).await.expect("commit");
    let result = tokio::time::timeout(WAIT, task).await.expect("the write finished").expect("task");
    match result {
        Err(StoreError::Fenced { instance }) => assert_eq!(instance, id, "{what}"),
        other => panic!("{what}: refused as fenced after the take-over, got {other:?}"),
    }
    let _ = takeover.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fenced_writes_wait_for_a_takeover_in_flight_and_are_refused() {
    let Some(database) = PgTestDatabase::create().await else { return };
    let pg = Arc::new(PgStore::open(database.url(), &OpenOptions::default()).await.expect("postgres"));
    let store: Arc<dyn Store> = pg.clone();
    let sub = subscription(&store, 5).await;
    let inst = instance(&store, sub.id, "raced").await;
    store.save_session(inst.id, vec![1], Timestamp::now(), None).await.expect("session");
    store.acquire_lease(inst.id, NodeId::new(), Duration::from_secs(60)).await.expect("acquire").expect("free");
    let queued = match store.enqueue_message(outbound(&inst, "15550001@s.whatsapp.net", "hi", None, b"")).await {
        Ok(Enqueued::Created(message)) => message,
        other => panic!("not created: {other:?}"),
    };
    let inbound = store
        .record_inbound(NewInboundMessage {
            id: gw_core::MessageId::new(),
            instance_id: inst.id,
            chat_jid: "15550002@s.whatsapp.net".into(),
            sender_jid: "15550002@s.whatsapp.net".into(),
            wa_message_id: "WARACE1".into(),
            kind: gw_core::MessageKind::Text,
            content: gw_core::MessageContent::text(),
            text: Some("hello".into()),
            quoted_message_id: None,
            at: Timestamp::now(),
            fence: None,
        })
        .await
        .expect("inbound");
    let put = WaStateWrite::Put { kind: "session", key: "k".into(), value: vec![1], stamp: 1 };
    store.wa_state_apply(inst.id, vec![put.clone()], None).await.expect("state");

    let id = inst.id;
    let writes: Vec<(&str, Write)> = vec![
        ("mark_message_sent", {
            let store = store.clone();
            Box::new(move |e| {
                Box::pin(async move { store.mark_message_sent(queued.id, Timestamp::now(), Some(e)).await.map(drop) })
            })
        }),
        ("save_session", {
            let store = store.clone();
            Box::new(move |e| {
                Box::pin(async move { store.save_session(id, vec![2], Timestamp::now(), Some(e)).await.map(drop) })
            })
        }),
        ("invalidate_session", {
            let store = store.clone();
            Box::new(move |e| Box::pin(async move { store.invalidate_session(id, Timestamp::now(), Some(e)).await }))
        }),
        ("finish_inbound", {
            let store = store.clone();
            let message = inbound.message.id;
            Box::new(move |e| {
                Box::pin(async move {
                    store.finish_inbound(message, MessageStatus::Received, None, None, Timestamp::now(), Some(e)).await
                })
            })
        }),
        ("wa_state_take", {
            let store = store.clone();
            Box::new(move |e| Box::pin(async move { store.wa_state_take(id, "session", "k", Some(e)).await.map(drop) }))
        }),
        ("wa_state_apply", {
            let store = store.clone();
            Box::new(move |e| Box::pin(async move { store.wa_state_apply(id, vec![put], Some(e)).await }))
        }),
        ("upsert_contact", {
            let store = store.clone();
            let upsert = move |fence| ContactUpsert {
                instance_id: id,
                jid: "15550042@s.whatsapp.net".into(),
                name: Some("late".into()),
                fence,
                ..Default::default()
            };
            Box::new(move |e| Box::pin(async move { store.upsert_contact(upsert(Some(e))).await.map(drop) }))
        }),
    ];
    for (what, write) in writes {
        write_waits_for_the_takeover(&database, id, what, write).await;
    }
    // None of them landed.
    assert_eq!(store.get_message(id, queued.id).await.expect("message").status, MessageStatus::Queued);
    let session = store.load_session(id).await.expect("load").expect("session");
    assert!(session.session_valid);
    assert_eq!(session.auth_state.expose(), &vec![1]);
    assert!(store.wa_state_get(id, "session", "k").await.expect("get").is_some());
    assert_eq!(store.find_contact_by_jid(id, "15550042@s.whatsapp.net").await.expect("contact"), None);
    pg.close().await;
    database.drop_database().await;
}
