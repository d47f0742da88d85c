//! Live messages between nodes over PostgreSQL LISTEN/NOTIFY (`PgFanout`), on a real database: every listener hears
//! each message whole and in order, long ones included, and a listener whose connection is terminated reports the
//! gap and hears what follows.

use std::time::Duration;

use gw_store::{FanoutListener, Heard, NodeFanout};
use gw_store_sql::PgFanout;
use gw_store_sql::testing::PgTestDatabase;
use gw_test_support::until_within;

async fn heard(listener: &mut Box<dyn FanoutListener>) -> Heard {
    tokio::time::timeout(Duration::from_secs(10), listener.next())
        .await
        .expect("heard within 10 s")
        .expect("the database answers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_listener_hears_each_message_whole_and_in_order_and_reports_gaps() {
    let Some(database) = PgTestDatabase::create().await else { return };
    let a = PgFanout::connect(database.url()).await.expect("a");
    let b = PgFanout::connect(database.url()).await.expect("b");
    let mut on_a = a.listen().await.expect("listen a");
    let mut on_b = b.listen().await.expect("listen b");

    let long = format!("{{\"text\":\"{}\"}}", "ü".repeat(20_000));
    for message in ["first", long.as_str(), "third"] {
        a.publish(message).await.expect("publish");
    }
    for listener in [&mut on_a, &mut on_b] {
        for expected in ["first", long.as_str(), "third"] {
            assert_eq!(heard(listener).await, Heard::Message(expected.to_owned()));
        }
    }

    // b's listening connection is terminated (a failover, an operator): b says so, listens again, hears the rest.
    assert!(database.terminate_connections(None).await >= 2);
    assert_eq!(heard(&mut on_b).await, Heard::Gap);
    // a's publishing connections were terminated too: the pool replaces them.
    until_within(Duration::from_secs(10), "publishing to recover", async || a.publish("after").await.is_ok()).await;
    assert_eq!(heard(&mut on_b).await, Heard::Message("after".into()));

    drop((on_a, on_b));
    a.close().await;
    b.close().await;
    database.drop_database().await;
}
