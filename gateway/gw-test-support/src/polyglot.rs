//! Plugins written in JavaScript and Python (`plugins/js/*`, `plugins/python/*`), built from source with the
//! SDKs' own build scripts the first time a test asks for one, and kept under the target directory by a hash of
//! their sources, so a second test (or run) reuses the component.
//!
//! The tools come from the language's registry (`npm ci` in `plugin-sdk/js`, `pip install -r
//! plugin-sdk/python/requirements.txt`), not from cargo. Without them a test prints a loud
//! `SKIPPED: js plugins` / `SKIPPED: python plugins` line and returns; under `CI` it fails instead, and
//! `.ci/run` also refuses those lines.

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::Command,
    sync::Mutex,
};

/// A plugin language other than Rust.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Language {
    JavaScript,
    Python,
}

impl Language {
    fn label(self) -> &'static str {
        match self {
            Self::JavaScript => "js",
            Self::Python => "python",
        }
    }

    /// The plugin's sources and the SDK files whose change must rebuild it.
    fn inputs(self, root: &Path, name: &str) -> Vec<PathBuf> {
        match self {
            Self::JavaScript => vec![
                root.join("plugins/js").join(name).join("plugin.js"),
                root.join("plugin-sdk/js/build.mjs"),
                root.join("plugin-sdk/js/package-lock.json"),
                root.join("plugin-sdk/wit/plugin.wit"),
            ],
            Self::Python => vec![
                root.join("plugins/python").join(name).join("app.py"),
                root.join("plugin-sdk/python/build.sh"),
                root.join("plugin-sdk/python/requirements.txt"),
                root.join("plugin-sdk/wit/plugin.wit"),
            ],
        }
    }

    /// Why this language's tools are not usable here, if they are not.
    fn missing_tools(self, root: &Path) -> Option<String> {
        match self {
            Self::JavaScript => {
                let sdk = root.join("plugin-sdk/js");
                if !succeeds(Command::new("node").arg("--version")) {
                    return Some("`node` is not installed".into());
                }
                let installed = sdk.join("node_modules/@bytecodealliance/componentize-js/package.json");
                (!installed.exists()).then(|| format!("run `npm ci` in {}", sdk.display()))
            }
            Self::Python => {
                let requirements = root.join("plugin-sdk/python/requirements.txt");
                let pinned = std::fs::read_to_string(&requirements).unwrap_or_default();
                let pinned = pinned.lines().find_map(|line| line.strip_prefix("componentize-py==")).unwrap_or("?");
                let found = Command::new("componentize-py")
                    .arg("--version")
                    .output()
                    .ok()
                    .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
                    .unwrap_or_default();
                (found != format!("componentize-py {pinned}")).then(|| {
                    format!(
                        "componentize-py {pinned} is not installed (found {found:?}): pip install -r {}",
                        requirements.display()
                    )
                })
            }
        }
    }

    fn build(self, root: &Path, name: &str, out: &Path) -> Command {
        match self {
            Self::JavaScript => {
                let mut command = Command::new("node");
                command
                    .arg(root.join("plugin-sdk/js/build.mjs"))
                    .arg(root.join("plugins/js").join(name).join("plugin.js"))
                    .arg(out);
                command
            }
            Self::Python => {
                let mut command = Command::new("bash");
                command
                    .arg(root.join("plugin-sdk/python/build.sh"))
                    .arg(root.join("plugins/python").join(name))
                    .arg(out);
                command
            }
        }
    }
}

fn succeeds(command: &mut Command) -> bool {
    command.output().is_ok_and(|output| output.status.success())
}

fn repository_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `<target>/polyglot-guests`: the test binary runs from `<target>/<profile>/deps/`.
fn output_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(std::env::temp_dir)
        .join("polyglot-guests")
}

/// One build at a time in a process; across processes the component is written under a temporary name and
/// renamed, so a reader never sees half a file.
static BUILDING: Mutex<()> = Mutex::new(());

/// The component of `plugins/<language>/<name>`, built now if its sources changed. `None` (after a
/// `SKIPPED: ...` line) when the language's tools are not installed; under `CI` that is a failure instead.
///
/// # Panics
/// When the tools are there but the build fails (a broken plugin is a failure, not a skip), or in CI without tools.
pub fn guest(language: Language, name: &str) -> Option<PathBuf> {
    let root = repository_root();
    let _building = BUILDING.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for input in language.inputs(&root, name) {
        let bytes = std::fs::read(&input).unwrap_or_else(|e| panic!("read {}: {e}", input.display()));
        bytes.hash(&mut hasher);
    }
    let dir = output_dir();
    let out = dir.join(format!("{}-{name}-{:016x}.wasm", language.label(), hasher.finish()));
    if out.exists() {
        return Some(out);
    }
    if let Some(missing) = language.missing_tools(&root) {
        let line = format!("SKIPPED: {} plugins ({name}): {missing}", language.label());
        assert!(std::env::var_os("CI").is_none(), "{line}; CI must build them");
        eprintln!("\n*** {line} ***\n");
        return None;
    }
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    let temporary = dir.join(format!(".{}-{name}-{}.wasm", language.label(), std::process::id()));
    let output = language
        .build(&root, name, &temporary)
        .output()
        .unwrap_or_else(|e| panic!("could not start the {} build of {name}: {e}", language.label()));
    assert!(
        output.status.success(),
        "building the {} plugin {name} failed ({}):\n{}{}",
        language.label(),
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    std::fs::rename(&temporary, &out).unwrap_or_else(|e| panic!("rename to {}: {e}", out.display()));
    Some(out)
}
