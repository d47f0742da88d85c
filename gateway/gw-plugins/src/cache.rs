//! Compiled components, cached by the SHA-256 of their bytes: in memory (moka) and as serialized native code on
//! disk, keyed also by the engine's compatibility hash so a wasmtime upgrade or a config change never loads an
//! incompatible `.cwasm`. A restart deserializes (about 0.1 ms) instead of compiling (tens of ms).

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sha2::{Digest, Sha256};
use wasmtime::{
    Engine,
    component::{Component, Linker},
};

use crate::call::{CallState, PluginPre};

/// A component ready to instantiate: compiled, linked against the host's imports, its `handle` export found.
pub struct Compiled {
    pub sha256: String,
    pub pre: PluginPre<CallState>,
    /// The interfaces the component imports (all within the allow-list).
    pub imports: Vec<String>,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("sha256", &self.sha256).finish_non_exhaustive()
    }
}

/// How components were obtained, for tests and metrics.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub compiled: AtomicU64,
    pub loaded_from_disk: AtomicU64,
}

/// Counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheCounts {
    /// Components compiled by cranelift.
    pub compiled: u64,
    /// Components deserialized from the disk cache.
    pub loaded_from_disk: u64,
}

/// Why a component could not be made ready.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Invalid(String),
    #[error("imports {0}, which plugins may not use (a plugin may import only the gateway:plugin/* interfaces)")]
    ForbiddenImport(String),
    #[error("does not implement the gateway:plugin world: {0}")]
    WrongWorld(String),
    #[error("compile cache: {0}")]
    Cache(String),
}

pub(crate) struct ComponentCache {
    memory: moka::sync::Cache<String, Arc<Compiled>>,
    dir: Option<PathBuf>,
    compat: String,
    pub(crate) stats: CacheStats,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl ComponentCache {
    pub(crate) fn new(engine: &Engine, dir: Option<PathBuf>, capacity: u64) -> std::io::Result<Self> {
        if let Some(dir) = &dir {
            std::fs::create_dir_all(dir)?;
        }
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        std::hash::Hash::hash(&engine.precompile_compatibility_hash(), &mut hasher);
        let compat = format!("{:016x}", std::hash::Hasher::finish(&hasher));
        Ok(Self { memory: moka::sync::Cache::new(capacity), dir, compat, stats: CacheStats::default() })
    }

    pub(crate) fn counts(&self) -> CacheCounts {
        CacheCounts {
            compiled: self.stats.compiled.load(Ordering::Relaxed),
            loaded_from_disk: self.stats.loaded_from_disk.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn cached(&self, sha256: &str) -> Option<Arc<Compiled>> {
        self.memory.get(sha256)
    }

    fn path(&self, dir: &Path, sha256: &str) -> PathBuf {
        dir.join(format!("{sha256}-{}.cwasm", self.compat))
    }

    /// The compiled component for `bytes` (whose hash is `sha256`): from memory, from disk, or compiled now.
    /// Blocking: compiling takes tens of milliseconds.
    pub(crate) fn load(
        &self,
        engine: &Engine,
        linker: &Linker<CallState>,
        sha256: &str,
        bytes: &[u8],
    ) -> Result<Arc<Compiled>, LoadError> {
        if let Some(hit) = self.memory.get(sha256) {
            return Ok(hit);
        }
        let component = match self.load_from_disk(engine, sha256) {
            Some(component) => component,
            None => self.compile(engine, sha256, bytes)?,
        };
        let compiled = Arc::new(link(engine, linker, sha256, &component)?);
        self.memory.insert(sha256.to_owned(), compiled.clone());
        Ok(compiled)
    }

    fn load_from_disk(&self, engine: &Engine, sha256: &str) -> Option<Component> {
        let dir = self.dir.as_ref()?;
        let path = self.path(dir, sha256);
        if !path.exists() {
            return None;
        }
        // SAFETY: the file is one this cache wrote with `Component::serialize` from this engine's configuration
        // (the name carries the engine's compatibility hash), written to a temporary name and renamed into place,
        // and never rewritten afterwards. wasmtime also checks the header and refuses a mismatched file.
        #[allow(unsafe_code)]
        let loaded = unsafe { Component::deserialize_file(engine, &path) };
        match loaded {
            Ok(component) => {
                self.stats.loaded_from_disk.fetch_add(1, Ordering::Relaxed);
                Some(component)
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), error = %error, "unusable cached component, recompiling");
                let _ = std::fs::remove_file(&path);
                None
            }
        }
    }

    fn compile(&self, engine: &Engine, sha256: &str, bytes: &[u8]) -> Result<Component, LoadError> {
        let component = Component::new(engine, bytes).map_err(|e| LoadError::Invalid(format!("{e:#}")))?;
        self.stats.compiled.fetch_add(1, Ordering::Relaxed);
        if let Some(dir) = &self.dir
            && let Err(error) = self.write(dir, sha256, &component)
        {
            // The component works; only the next restart pays for compiling it again.
            tracing::warn!(error = %error, "could not write the compiled component to the cache");
        }
        Ok(component)
    }

    fn write(&self, dir: &Path, sha256: &str, component: &Component) -> Result<(), LoadError> {
        let bytes = component.serialize().map_err(|e| LoadError::Cache(format!("{e:#}")))?;
        let path = self.path(dir, sha256);
        let temporary = dir.join(format!(".{sha256}-{}.tmp", std::process::id()));
        std::fs::write(&temporary, bytes).map_err(|e| LoadError::Cache(e.to_string()))?;
        std::fs::rename(&temporary, &path).map_err(|e| LoadError::Cache(e.to_string()))
    }
}

/// Checks the component's imports against what the host offers, then pre-links it.
fn link(
    engine: &Engine,
    linker: &Linker<CallState>,
    sha256: &str,
    component: &Component,
) -> Result<Compiled, LoadError> {
    let imports: Vec<String> = component.component_type().imports(engine).map(|(name, _)| name.to_owned()).collect();
    let forbidden: Vec<String> = imports
        .iter()
        .filter(|name| !crate::engine::ALLOWED_IMPORT_PREFIXES.iter().any(|prefix| name.starts_with(prefix)))
        .map(|name| format!("`{name}`"))
        .collect();
    if !forbidden.is_empty() {
        return Err(LoadError::ForbiddenImport(forbidden.join(", ")));
    }
    let instance_pre = linker.instantiate_pre(component).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::WrongWorld(format!("{e:#}")))?;
    Ok(Compiled { sha256: sha256.to_owned(), pre, imports })
}
