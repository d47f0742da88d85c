//! The book's configuration reference (`docs/src/reference/config.md`) lists every key of `Settings` with its
//! environment variable and default, and no other key. The keys and defaults are read from `Settings::default()`
//! through serde, so a key added to the code and not to the page (or the other way round) fails here, and the
//! failure prints the rows to paste.

use std::collections::BTreeMap;

use serde_json::Value;

use gateway::config::Settings;

const CONFIG_PAGE: &str = include_str!("../../../docs/src/reference/config.md");

/// How the page writes a default: strings in backticks, the empty string and `null` in words, anything else as
/// compact JSON in backticks.
fn render(value: &Value) -> String {
    match value {
        Value::String(s) if s.is_empty() => "(empty)".to_owned(),
        Value::String(s) => format!("`{s}`"),
        Value::Null => "(none)".to_owned(),
        other => format!("`{other}`"),
    }
}

fn env_var(key: &str) -> String {
    format!("GATEWAY_{}", key.replace('.', "_").to_uppercase())
}

/// Every leaf key of the settings (objects are descended into, lists are values), except the tier limits.
fn flatten(prefix: &str, value: &Value, out: &mut BTreeMap<String, Value>) {
    match value {
        Value::Object(map) if prefix != "tiers" => {
            for (name, inner) in map {
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                flatten(&key, inner, out);
            }
        }
        Value::Object(_) => {}
        leaf => {
            out.insert(prefix.to_owned(), leaf.clone());
        }
    }
}

/// Rows of the table whose first cell is a backticked key: `| `server.listen` | `GATEWAY_…` | default | … |`.
fn page_rows(first_header: &str) -> BTreeMap<String, Vec<String>> {
    let start = CONFIG_PAGE.find(first_header).unwrap_or_else(|| panic!("config.md has a table headed {first_header}"));
    CONFIG_PAGE[start..]
        .lines()
        .skip(2)
        .take_while(|line| line.starts_with('|'))
        .filter_map(|line| {
            let cells: Vec<String> = line.trim_matches('|').split(" | ").map(|c| c.trim().to_owned()).collect();
            let key = cells.first()?.strip_prefix('`')?.strip_suffix('`')?.to_owned();
            Some((key, cells))
        })
        .collect()
}

fn defaults() -> Value {
    serde_json::to_value(Settings::default()).expect("the settings serialise")
}

#[test]
fn the_config_page_lists_every_key_with_its_variable_and_default() {
    let mut keys = BTreeMap::new();
    flatten("", &defaults(), &mut keys);
    let rows = page_rows("| key | environment variable | default |");
    let mut problems = Vec::new();
    for (key, default) in &keys {
        let expected = [format!("`{key}`"), format!("`{}`", env_var(key)), render(default)];
        match rows.get(key) {
            None => problems.push(format!("missing: {} | (meaning) |", expected.join(" | "))),
            Some(cells) if cells.len() < 4 || cells[..3] != expected => problems.push(format!(
                "wrong:   {} | (meaning) |   (the page has: {})",
                expected.join(" | "),
                cells.join(" | ")
            )),
            Some(_) => {}
        }
    }
    for key in rows.keys().filter(|key| !keys.contains_key(*key)) {
        problems.push(format!("extra:   `{key}` is not a key of Settings"));
    }
    assert!(problems.is_empty(), "docs/src/reference/config.md is out of date with Settings:\n{}", problems.join("\n"));
}

#[test]
fn the_config_page_lists_every_tier_limit_with_its_defaults() {
    let defaults = defaults();
    // Columns in the tiers' own order (free first), not serde's alphabetical one.
    let names: Vec<&str> = gw_core::Tier::ALL.iter().map(gw_core::Tier::as_str).collect();
    let header = format!("| limit | {} |", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(" | "));
    let mut limits: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in &names {
        let tier = defaults["tiers"][name].as_object().unwrap_or_else(|| panic!("tiers.{name} is a map of limits"));
        for (limit, value) in tier {
            limits.entry(limit.clone()).or_default().push(render(value));
        }
    }
    let expected: BTreeMap<String, Vec<String>> = limits
        .into_iter()
        .map(|(limit, values)| {
            let mut cells = vec![format!("`{limit}`")];
            cells.extend(values);
            (limit, cells)
        })
        .collect();
    let listed = page_rows(&header);
    let table = |rows: &BTreeMap<String, Vec<String>>| {
        rows.values().map(|cells| format!("| {} |", cells.join(" | "))).collect::<Vec<_>>().join("\n")
    };
    assert!(
        listed == expected,
        "docs/src/reference/config.md's tier table is out of date with the tier defaults; under the header\n{header}\n\
         it should list:\n{}",
        table(&expected)
    );
}

/// The example in the configuring guide is a configuration the gateway accepts, once its `<…>` placeholders are
/// filled in.
#[test]
#[allow(clippy::result_large_err)] // figment's Jail closures return its own (large) error type.
fn the_configuring_guides_example_loads() {
    let guide = include_str!("../../../docs/src/guide/configuring.md");
    let start = guide.find("```toml\n").expect("the configuring guide has a TOML example") + "```toml\n".len();
    let example = &guide[start..];
    let example = &example[..example.find("```").expect("the example is closed")];
    // A placeholder becomes base64 of 32 bytes, which every one of the three secrets accepts.
    let filled: String =
        example
            .split('"')
            .enumerate()
            .map(|(i, part)| {
                if i % 2 == 1 && part.starts_with('<') { "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I=" } else { part }
            })
            .collect::<Vec<_>>()
            .join("\"");
    figment::Jail::expect_with(|jail| {
        jail.clear_env();
        jail.create_file("gateway.toml", &filled)?;
        let settings = Settings::load(Some(std::path::Path::new("gateway.toml")))
            .unwrap_or_else(|e| panic!("the guide's example is refused: {e}\n{filled}"));
        assert_eq!(settings.mode, gateway::config::Mode::Production);
        Ok(())
    });
}
