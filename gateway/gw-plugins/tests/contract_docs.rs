//! The plugin SDK's README states the contract the gateway enforces: its list of failure kinds is exactly the
//! kinds the gateway records, and its limits table names the contract's figures.

const SDK_README: &str = include_str!("../../../plugin-sdk/README.md");

/// The kinds listed between the README's `failure-kinds` markers (each line `- \`kind\`: ...`).
fn documented_kinds() -> Vec<String> {
    let start = SDK_README.find("<!-- failure-kinds").expect("the README marks its failure-kinds list");
    let end = SDK_README.find("<!-- /failure-kinds -->").expect("the list is closed");
    SDK_README[start..end]
        .lines()
        .filter_map(|line| line.strip_prefix("- `"))
        .filter_map(|rest| rest.split_once('`').map(|(kind, _)| kind.to_owned()))
        .collect()
}

#[test]
fn the_sdk_readme_lists_exactly_the_failure_kinds_the_gateway_records() {
    let mut documented = documented_kinds();
    documented.sort();
    let mut recorded: Vec<String> = gw_core::PLUGIN_FAILURE_KINDS.iter().map(|k| (*k).to_owned()).collect();
    recorded.sort();
    assert_eq!(documented, recorded);
}

#[test]
fn the_sdk_readme_states_the_contracts_limits() {
    let figure = |n: usize| {
        // The README writes thousands with a comma (4,096).
        let digits = n.to_string();
        if digits.len() > 3 {
            format!("{},{}", &digits[..digits.len() - 3], &digits[digits.len() - 3..])
        } else {
            digits
        }
    };
    for (row, limit) in [
        ("| replies per verdict |", gw_core::PLUGIN_MAX_REPLIES),
        ("| one reply |", gw_core::PLUGIN_MAX_REPLY_CHARS),
        ("| modified text (`modify`) |", gw_core::MAX_TEXT_CHARS),
        ("| drop reason |", gw_core::PLUGIN_MAX_DROP_REASON_BYTES),
        ("| `kv` key |", gw_core::PLUGIN_KV_MAX_KEY_BYTES),
        ("| `kv` value |", gw_core::PLUGIN_KV_MAX_VALUE_BYTES),
        ("| `kv` keys per plugin and instance |", gw_core::PLUGIN_KV_MAX_KEYS as usize),
        ("| `kv` writes (set or delete) per call |", gw_core::PLUGIN_KV_MAX_WRITES_PER_CALL as usize),
        ("| log lines per call |", gw_core::PLUGIN_MAX_LOG_LINES_PER_CALL),
        ("| one log line |", gw_core::PLUGIN_MAX_LOG_LINE_BYTES),
        ("| bytes passed to the host at once", gw_plugins::MAX_TRANSFER_BYTES),
    ] {
        let line = SDK_README.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no row {row}"));
        assert!(line.contains(&format!(" {} ", figure(limit))), "{row} should state {limit}: {line}");
    }
    let caption = format!("{} (a caption)", figure(gw_core::MAX_CAPTION_CHARS));
    assert!(SDK_README.contains(&caption), "the modify row states the caption limit: {caption}");
}
