//! The book's reference pages that describe this crate's data: the problem types (`problem_types!`) and the routes
//! (the committed OpenAPI snapshot). Each check prints the text the page should hold when it fails, so fixing the
//! page is a paste.

use std::collections::BTreeSet;

use gw_http::ProblemType;

const PROBLEMS_PAGE: &str = include_str!("../../../docs/src/reference/problems.md");
const API_PAGE: &str = include_str!("../../../docs/src/reference/api.md");
const SNAPSHOT: &str = include_str!("../openapi.json");

const TABLE_BEGIN: &str = "<!-- problem-types:begin";
const TABLE_END: &str = "<!-- problem-types:end -->";

/// The problem table as the page must hold it: one row per type, in `problem_types!` order.
fn expected_problem_table() -> String {
    let mut table = String::from("| type | status | title | meaning |\n| --- | --- | --- | --- |\n");
    for problem in ProblemType::ALL {
        let cell = |text: &str| text.replace('|', "\\|");
        table.push_str(&format!(
            "| `/problems/{}` | {} | {} | {} |\n",
            problem.slug,
            problem.status,
            cell(problem.title),
            cell(problem.description)
        ));
    }
    table
}

#[test]
fn the_problem_types_page_lists_every_problem_type_as_the_code_defines_it() {
    let start =
        PROBLEMS_PAGE.find(TABLE_BEGIN).expect("problems.md marks its generated table with problem-types:begin");
    let after_marker = &PROBLEMS_PAGE[start..];
    let body_start = after_marker.find("-->").map(|i| i + "-->".len()).expect("the begin marker is closed");
    let end = after_marker.find(TABLE_END).expect("problems.md closes its table with problem-types:end");
    let listed = after_marker[body_start..end].trim();
    let expected = expected_problem_table();
    assert!(
        listed == expected.trim(),
        "docs/src/reference/problems.md is out of date with gw-http's problem_types!; replace the lines between the \
         markers with:\n\n{expected}"
    );
}

/// `(METHOD, path)` of every operation in the snapshot.
fn snapshot_routes() -> BTreeSet<(String, String)> {
    let document: serde_json::Value = serde_json::from_str(SNAPSHOT).expect("the snapshot is JSON");
    let paths = document["paths"].as_object().expect("the snapshot has paths");
    let mut routes = BTreeSet::new();
    for (path, operations) in paths {
        for method in operations.as_object().expect("a path item is an object").keys() {
            if ["get", "put", "post", "delete", "patch", "head", "options", "trace"].contains(&method.as_str()) {
                routes.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    routes
}

/// `(METHOD, path)` of every table row of the form `| `METHOD` | `/path` | … |`.
fn page_routes() -> Vec<(String, String)> {
    API_PAGE
        .lines()
        .filter_map(|line| {
            let mut cells = line.strip_prefix('|')?.split('|').map(str::trim);
            let method = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            let path = cells.next()?.strip_prefix('`')?.strip_suffix('`')?;
            Some((method.to_owned(), path.to_owned()))
        })
        .collect()
}

#[test]
fn the_api_page_lists_every_route_of_the_snapshot_once_and_no_other() {
    let listed = page_routes();
    let unique: BTreeSet<_> = listed.iter().cloned().collect();
    assert_eq!(unique.len(), listed.len(), "docs/src/reference/api.md lists a route twice");
    let snapshot = snapshot_routes();
    let missing: Vec<String> =
        snapshot.difference(&unique).map(|(m, p)| format!("| `{m}` | `{p}` | (who may call) |")).collect();
    let extra: Vec<String> = unique.difference(&snapshot).map(|(m, p)| format!("{m} {p}")).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "docs/src/reference/api.md does not match gateway/gw-http/openapi.json.\nAdd these rows:\n{}\nRemove these \
         (not in the snapshot):\n{}",
        missing.join("\n"),
        extra.join("\n")
    );
}
