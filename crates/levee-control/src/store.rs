//! Where the control plane keeps its state: finding the configured store
//! (a SQLite file, or a PostgreSQL database with `backend = "postgres"`)
//! and opening it. The loops persist through `levee_store::Store`.

use levee_config::{Config, StoreBackend};
use std::path::{Path, PathBuf};

/// The state store's file: `store.path` relative to the config file's
/// directory; `None` (memory only) for `:memory:`, or for a relative path
/// when the config came from no file (embedded use and tests).
pub fn store_path(config: &Config, config_path: Option<&Path>) -> Option<PathBuf> {
    relative_to_config(config.store.path.as_ref()?, config_path)
}

/// `path` as written in the config: relative to the config file's
/// directory; `None` for a relative path when the config came from no file.
pub fn relative_to_config(path: &Path, config_path: Option<&Path>) -> Option<PathBuf> {
    if path.is_absolute() {
        return Some(path.to_path_buf());
    }
    let dir = config_path?.parent()?;
    Some(if dir.as_os_str().is_empty() {
        path.to_path_buf()
    } else {
        dir.join(path)
    })
}

/// Opens the configured store: PostgreSQL for `backend = "postgres"`,
/// else the SQLite file (see [`store_path`]); `None` keeps state in memory
/// only. The error names the file or the database (never its password)
/// and what is wrong.
pub fn open_store(
    config: &Config,
    config_path: Option<&Path>,
) -> Result<Option<Box<dyn levee_store::Store>>, String> {
    if config.store.backend == StoreBackend::Postgres {
        return open_postgres(config).map(|s| Some(Box::new(s) as Box<dyn levee_store::Store>));
    }
    let Some(path) = store_path(config, config_path) else {
        return Ok(None);
    };
    levee_store::SqliteStore::open(&path)
        .map(|s| Some(Box::new(s) as Box<dyn levee_store::Store>))
        .map_err(|e| e.to_string())
}

/// Opens the PostgreSQL store the config names (whatever its `backend`),
/// with its timeouts; the error names the database (never its password)
/// and what is wrong.
pub fn open_postgres(config: &Config) -> Result<levee_store::PostgresStore, String> {
    let Some(url) = &config.store.url else {
        // The config refuses this; a config built in code may not.
        return Err("store: `backend = \"postgres\"` needs `url`".to_owned());
    };
    let timeouts = levee_store::PostgresTimeouts {
        connect: config.store.connect_timeout,
        statement: config.store.statement_timeout,
    };
    levee_store::PostgresStore::open_with(url.expose(), timeouts).map_err(|e| e.to_string())
}
