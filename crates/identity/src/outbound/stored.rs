//! The platform's stored secrets that servers' `credentials` name (`store:NAME`), read from
//! the vault before a snapshot is built — building is synchronous, and a missing secret must
//! stop the configuration from loading, not a call hours later.

use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use gatehouse_config::{SecretSource, ServerConfig};

use super::Vault;
use crate::error::CredentialError;

/// Values of the stored secrets servers' credentials read, by name.
#[derive(Default)]
pub struct StoredSecrets {
    values: RwLock<HashMap<String, String>>,
}

impl std::fmt::Debug for StoredSecrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Names only: the values are secrets.
        let values = self.values.read().expect("stored secrets lock");
        f.debug_set().entries(values.keys()).finish()
    }
}

impl StoredSecrets {
    /// The stored secrets `server`'s credentials name.
    pub fn names_in(server: &ServerConfig) -> BTreeSet<String> {
        let Some(c) = &server.credentials else {
            return BTreeSet::new();
        };
        [&c.client_secret, &c.secret]
            .into_iter()
            .flatten()
            .filter_map(|s| match s.source() {
                Some(SecretSource::Store(name)) => Some(name.to_string()),
                _ => None,
            })
            .collect()
    }

    /// Reads the named secrets from the vault; returns the names whose value changed (a
    /// secret that is gone is forgotten, and counts as changed).
    pub async fn refresh(
        &self,
        vault: &Vault,
        names: &BTreeSet<String>,
    ) -> Result<Vec<String>, CredentialError> {
        let mut read = HashMap::new();
        for name in names {
            if let Some(v) = vault.get(&Vault::platform_secret(name)).await? {
                read.insert(name.clone(), v);
            }
        }
        let mut values = self.values.write().expect("stored secrets lock");
        let changed = names
            .iter()
            .filter(|n| values.get(*n) != read.get(*n))
            .cloned()
            .collect();
        for name in names {
            match read.remove(name) {
                Some(v) => values.insert(name.clone(), v),
                None => values.remove(name),
            };
        }
        Ok(changed)
    }

    /// The value of the stored secret `name`, if it was read.
    pub fn get(&self, name: &str) -> Option<String> {
        self.values
            .read()
            .expect("stored secrets lock")
            .get(name)
            .cloned()
    }

    /// A digest of what `server`'s credentials read from the store, to tell whether a built
    /// server still matches the stored values (kept in memory only).
    pub fn fingerprint(&self, server: &ServerConfig) -> Vec<(String, Option<[u8; 32]>)> {
        Self::names_in(server)
            .into_iter()
            .map(|n| {
                let d = self.get(&n).map(|v| crate::cache::sha256(v.as_bytes()));
                (n, d)
            })
            .collect()
    }
}
