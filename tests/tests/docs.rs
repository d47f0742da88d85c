//! The documentation is well-formed without mdBook installed: every page `docs/src/SUMMARY.md` links exists (draft
//! links `[Title]()` aside), every page under `docs/src` is in SUMMARY, no relative link in README, ARCHITECTURE,
//! BENCHMARKS or the book points to a missing file, and ARCHITECTURE.md's crate graph is the one the `Cargo.toml`
//! files declare. Failures print what to fix.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Component, Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ sits in the workspace root").to_path_buf()
}

fn read(path: &Path) -> String {
    fs::read_to_string(path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every `.md` file under `dir`, recursively.
fn markdown_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot list {}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|ext| ext == "md") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
}

/// The targets of the inline links `[text](target)` outside fenced code blocks and code spans.
fn link_targets(markdown: &str) -> Vec<String> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        // Drop code spans, whose brackets are not links.
        let prose: String = line.split('`').step_by(2).collect::<Vec<_>>().join(" ");
        let mut rest = prose.as_str();
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            targets.push(after[..end].trim().to_owned());
            rest = &after[end..];
        }
    }
    targets
}

/// A link that points into this repository: not a URL, not a bare anchor; without its `#anchor`.
fn relative_target(target: &str) -> Option<&str> {
    if target.contains("://") || target.starts_with("mailto:") || target.starts_with('#') || target.is_empty() {
        return None;
    }
    let path = target.split('#').next().unwrap_or(target);
    (!path.is_empty()).then_some(path)
}

/// `base/target` with `.` and `..` resolved lexically (so a missing file is reported, not an I/O error).
fn resolve(base: &Path, target: &str) -> PathBuf {
    let mut path = PathBuf::new();
    for component in base.join(target).components() {
        match component {
            Component::ParentDir => {
                path.pop();
            }
            Component::CurDir => {}
            other => path.push(other),
        }
    }
    path
}

fn summary() -> String {
    read(&root().join("docs/src/SUMMARY.md"))
}

#[test]
fn every_summary_link_exists_and_every_page_is_in_the_summary() {
    let src = root().join("docs/src");
    let summary = summary();
    let linked: BTreeSet<PathBuf> =
        link_targets(&summary).iter().filter_map(|t| relative_target(t)).map(|t| resolve(&src, t)).collect();
    let missing: Vec<String> = linked
        .iter()
        .filter(|p| !p.is_file())
        .map(|p| p.strip_prefix(&src).unwrap_or(p).display().to_string())
        .collect();
    assert!(
        missing.is_empty(),
        "SUMMARY.md links pages that do not exist (write them, or make the link a draft `[Title]()`): {missing:?}"
    );
    let unlisted: Vec<String> = markdown_files(&src)
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|name| name != "SUMMARY.md") && !linked.contains(p))
        .map(|p| p.strip_prefix(&src).unwrap_or(&p).display().to_string())
        .collect();
    assert!(unlisted.is_empty(), "pages under docs/src that SUMMARY.md does not list: {unlisted:?}");
}

#[test]
fn no_relative_link_points_to_a_missing_file() {
    let root = root();
    let mut files: Vec<PathBuf> =
        ["README.md", "ARCHITECTURE.md", "BENCHMARKS.md"].iter().map(|name| root.join(name)).collect();
    files.extend(markdown_files(&root.join("docs/src")));
    let mut broken = Vec::new();
    for file in &files {
        let dir = file.parent().expect("a file has a folder");
        for target in link_targets(&read(file)) {
            if let Some(path) = relative_target(&target)
                && !resolve(dir, path).exists()
            {
                broken.push(format!("{}: {target}", file.strip_prefix(&root).unwrap_or(file).display()));
            }
        }
    }
    assert!(broken.is_empty(), "relative links to missing files:\n{}", broken.join("\n"));
}

/// `[dependencies]` entries of a `Cargo.toml` that name one of `members` (dev- and build-dependencies excluded).
fn workspace_dependencies(manifest: &str, members: &BTreeSet<String>) -> BTreeSet<String> {
    let mut in_dependencies = false;
    let mut found = BTreeSet::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if !in_dependencies {
            continue;
        }
        let name = line.split(['=', '.', ' ']).next().unwrap_or_default();
        if members.contains(name) {
            found.insert(name.to_owned());
        }
    }
    found
}

fn package_name(manifest: &str) -> String {
    manifest
        .lines()
        .find_map(|line| line.trim().strip_prefix("name = \"")?.strip_suffix('"').map(str::to_owned))
        .expect("a member's manifest names its package")
}

/// The workspace's member folders, from the root manifest's `members = [...]`.
fn member_dirs(root_manifest: &str) -> Vec<String> {
    let start = root_manifest.find("members = [").expect("the root manifest lists its members");
    let list = &root_manifest[start + "members = [".len()..];
    let list = &list[..list.find(']').expect("the member list is closed")];
    list.split(',').map(|m| m.trim().trim_matches('"').to_owned()).filter(|m| !m.is_empty()).collect()
}

#[test]
fn the_architecture_crate_graph_matches_the_manifests() {
    let root = root();
    let manifests: Vec<String> = member_dirs(&read(&root.join("Cargo.toml")))
        .iter()
        .map(|dir| read(&root.join(dir).join("Cargo.toml")))
        .collect();
    let members: BTreeSet<String> = manifests.iter().map(|m| package_name(m)).collect();
    let actual: BTreeMap<String, BTreeSet<String>> =
        manifests.iter().map(|m| (package_name(m), workspace_dependencies(m, &members))).collect();

    let architecture = read(&root.join("ARCHITECTURE.md"));
    let begin = "<!-- crate-graph:begin -->";
    let start = architecture.find(begin).expect("ARCHITECTURE.md marks its crate graph") + begin.len();
    let end = architecture.find("<!-- crate-graph:end -->").expect("ARCHITECTURE.md closes its crate graph");
    let documented: BTreeMap<String, BTreeSet<String>> = architecture[start..end]
        .lines()
        .filter_map(|line| line.split_once("->"))
        .map(|(name, deps)| {
            let deps = deps.split_whitespace().filter(|d| *d != "(none)").map(str::to_owned).collect();
            (name.trim().to_owned(), deps)
        })
        .collect();

    let width = members.iter().map(String::len).max().unwrap_or(0);
    let expected: Vec<String> = actual
        .iter()
        .map(|(name, deps)| {
            let deps =
                if deps.is_empty() { "(none)".to_owned() } else { deps.iter().cloned().collect::<Vec<_>>().join(" ") };
            format!("{name:width$} -> {deps}")
        })
        .collect();
    assert!(
        documented == actual,
        "ARCHITECTURE.md's crate graph differs from the Cargo.toml files; the block should hold (in any order):\n{}",
        expected.join("\n")
    );
}
