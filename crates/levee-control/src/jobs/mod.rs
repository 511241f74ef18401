//! Where async routes keep their jobs: the backend a gateway is started
//! with (`[jobs] backend`), the embedded queue (`embedded`: a ledger per
//! route over a group-committed SQLite log) or NATS JetStream for several
//! gateways. The data plane's side (accepting, delivering, reading back)
//! is `levee_proxy::jobs`.

pub mod embedded;
pub mod jetstream;

use levee_config::{Config, JobBackend as BackendKind, JobDurabilityMode};
use levee_proxy::jobs::JobBackend;
use std::path::Path;
use std::sync::Arc;

/// The job backend `config` asks for. The choice is made once, at start:
/// a reload that changes `[jobs]` takes effect at the next start.
pub fn backend(config: &Config, config_path: Option<&Path>) -> Result<Arc<dyn JobBackend>, String> {
    match config.jobs.backend {
        BackendKind::Embedded => {
            let durability = match config.jobs.durability {
                JobDurabilityMode::Fsync => levee_store::JobDurability::Fsync,
                JobDurabilityMode::Os => levee_store::JobDurability::Os,
            };
            let file = config
                .jobs
                .path
                .as_deref()
                .and_then(|p| crate::store::relative_to_config(p, config_path))
                .map(|p| (p, durability));
            Ok(Arc::new(embedded::EmbeddedBackend::new(file)))
        }
        BackendKind::Jetstream => {
            let settings = config
                .jobs
                .jetstream
                .as_ref()
                .ok_or("`backend = \"jetstream\"` needs `[jobs.jetstream]`")?;
            Ok(Arc::new(jetstream::JetStreamBackend::new(settings)))
        }
    }
}
