//! A guest's `setup` (`wit/setup.wit`): the one call the host makes before a
//! guest serves, on a fresh instance with the guest's grants (its database,
//! to create tables), under the call deadline. Start-up retries it while it
//! fails (a database that is still starting), staying unready; a swap whose
//! guest fails it is refused.

use crate::runtime::call::{Failure, arm, classify, within};
use crate::runtime::guest::Guest;
use crate::runtime::services::Services;
use crate::runtime::state::{Grants, GuestState, new_store};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why `setup` did not succeed.
#[derive(Debug)]
pub enum SetupError {
    /// The guest returned an error.
    Refused(String),
    /// The call failed (deadline, memory, trap).
    Failed(Failure),
}

impl std::fmt::Display for SetupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SetupError::Refused(message) => write!(f, "the guest's setup failed: {message}"),
            SetupError::Failed(failure) => write!(f, "the guest's setup call failed: {}", failure.message),
        }
    }
}

impl std::error::Error for SetupError {}

impl Guest {
    /// Calls the guest's `setup`, if it exports one; logs how it went.
    pub async fn setup(
        &self,
        engine: &wasmtime::Engine,
        max_memory: usize,
        grants: &Arc<Grants>,
        services: &Arc<Services>,
        deadline: Option<Duration>,
    ) -> Result<(), SetupError> {
        let Some(indices) = &self.setup else { return Ok(()) };
        let started = Instant::now();
        let mut store =
            new_store(engine, GuestState::new(max_memory, grants.clone(), services.clone(), self.name.as_str().into()));
        let instance = match self.pre.instantiate_async(&mut store).await {
            Ok(instance) => instance,
            Err(e) => return Err(SetupError::Failed(classify(&e, &store, deadline))),
        };
        let exports = indices.load(&mut store, &instance).map_err(|e| SetupError::Failed(classify(&e, &store, deadline)))?;
        arm(&mut store, deadline);
        let outcome = within(deadline, exports.scalelab_guests_setup().call_setup(&mut store)).await;
        let result = match outcome {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(message))) => Err(SetupError::Refused(message)),
            Ok(Err(e)) => Err(SetupError::Failed(classify(&e, &store, deadline))),
            Err(failure) => Err(SetupError::Failed(failure)),
        };
        let duration_ms = started.elapsed().as_secs_f64() * 1e3;
        match &result {
            Ok(()) => tracing::info!(step = "setup", guest = %self.name, duration_ms, "guest setup done"),
            Err(e) => tracing::warn!(step = "setup", guest = %self.name, duration_ms, error = %e, "guest setup failed"),
        }
        result
    }
}
