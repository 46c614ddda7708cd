//! What every account action is handed: the service's state.

use shared_proto::bus::Bus;

use crate::credentials::PasswordHasherPool;
use crate::settings::AuthSettings;
use crate::store::Store;

/// Everything an account action needs.
pub struct AuthService {
    pub store: Store,
    pub bus: Bus,
    pub hasher: PasswordHasherPool,
    pub settings: AuthSettings,
}
