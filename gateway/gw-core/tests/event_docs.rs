//! The book's events reference lists exactly the event types the gateway publishes (`EventType`, the public
//! contract's spelling).

use std::collections::BTreeSet;

use gw_core::EventType;

const EVENTS_PAGE: &str = include_str!("../../../docs/src/reference/events.md");

/// The first cell of every table row whose first cell is a backticked name: `| `message.sent` | … |`.
fn listed_types() -> Vec<&'static str> {
    EVENTS_PAGE.lines().filter_map(|line| line.strip_prefix("| `")?.split_once('`').map(|(name, _)| name)).collect()
}

#[test]
fn the_events_page_lists_every_event_type_once_and_no_other() {
    let listed = listed_types();
    let unique: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(unique.len(), listed.len(), "docs/src/reference/events.md lists a type twice: {listed:?}");
    let known: BTreeSet<&str> = EventType::ALL.iter().map(EventType::as_str).collect();
    let missing: Vec<String> =
        known.difference(&unique).map(|name| format!("| `{name}` | (when) | (data) |")).collect();
    let extra: Vec<&&str> = unique.difference(&known).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/src/reference/events.md does not match gw_core::EventType.\nAdd these rows:\n{}\nRemove these (not \
         event types): {extra:?}",
        missing.join("\n")
    );
}
