//! The API reference's audit table lists exactly the actions the gateway writes (`AuditAction`), each with the
//! resource it is about.

use std::collections::BTreeMap;

use gw_core::AuditAction;

const API_PAGE: &str = include_str!("../../../docs/src/reference/api.md");

/// `action -> resource` of every row `| `<resource>.<verb>` | <resource> | … |` (the resource cell is not in
/// backticks, so the route table's reader never takes these rows for routes).
fn listed_actions() -> Vec<(&'static str, &'static str)> {
    API_PAGE
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix("| `")?.split('|').map(str::trim);
            let action = cells.next()?.strip_suffix('`')?;
            let resource = cells.next()?;
            (action.contains('.') && !resource.starts_with('`')).then_some((action, resource))
        })
        .collect()
}

#[test]
fn the_api_page_lists_every_audit_action_once_with_its_resource() {
    let listed = listed_actions();
    let unique: BTreeMap<&str, &str> = listed.iter().copied().collect();
    assert_eq!(unique.len(), listed.len(), "docs/src/reference/api.md lists an audit action twice");
    let known: BTreeMap<&str, &str> = AuditAction::ALL.iter().map(|a| (a.as_str(), a.resource().as_str())).collect();
    let missing: Vec<String> = known
        .iter()
        .filter(|(action, resource)| unique.get(*action) != Some(*resource))
        .map(|(action, resource)| format!("| `{action}` | {resource} | (when) |"))
        .collect();
    let extra: Vec<&&str> = unique.keys().filter(|action| !known.contains_key(*action)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/src/reference/api.md's audit table does not match gw_core::AuditAction.\nAdd or fix these rows:\n{}\n\
         Remove these (not audit actions): {extra:?}",
        missing.join("\n")
    );
}
