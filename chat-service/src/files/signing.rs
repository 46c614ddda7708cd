//! Signed URLs: how a browser's `<img src>`, which cannot send a header,
//! reads a file it was shown in a message.
//!
//! A URL is the file's path with `for` (whom it was made for: a reader's
//! user id, or the conversation for an event every member receives), `exp`
//! (when it stops working, in Unix seconds) and `sig`, an HMAC-SHA256 of
//! the three under a key every replica shares. Whoever holds the URL may
//! read that one file until `exp`: it is a capability, as a cloud storage's
//! pre-signed URL is, which is why it is short-lived and a fresh `HISTORY`
//! hands out fresh ones.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// The query of a signed URL.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct SignedQuery {
    #[serde(rename = "for")]
    pub scope: Option<String>,
    pub exp: Option<u64>,
    pub sig: Option<String>,
}

impl SignedQuery {
    /// True if the request tries to use a signature at all.
    pub fn is_present(&self) -> bool {
        self.sig.is_some() || self.exp.is_some() || self.scope.is_some()
    }
}

/// Why a signed URL is refused; both are a `403`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureError {
    Expired,
    Invalid,
}

#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
    ttl: Duration,
}

impl UrlSigner {
    pub fn new(key: &[u8], ttl: Duration) -> Self {
        UrlSigner {
            key: key.to_vec(),
            ttl,
        }
    }

    /// `path` signed for `scope`, valid for the configured time from now.
    pub fn sign(&self, path: &str, scope: &str) -> String {
        self.sign_until(path, scope, unix_now() + self.ttl.as_secs())
    }

    fn sign_until(&self, path: &str, scope: &str, exp: u64) -> String {
        let sig = hex::encode(self.mac(path, scope, exp).finalize().into_bytes());
        // Scopes are ids: only `:` and `|` need escaping in a query.
        let scope = scope.replace(':', "%3A").replace('|', "%7C");
        format!("{path}?for={scope}&exp={exp}&sig={sig}")
    }

    /// Checks a signed request for `path`.
    pub fn verify(&self, path: &str, query: &SignedQuery) -> Result<(), SignatureError> {
        let (Some(scope), Some(exp), Some(sig)) = (&query.scope, query.exp, &query.sig) else {
            return Err(SignatureError::Invalid);
        };
        let sig = hex::decode(sig).map_err(|_| SignatureError::Invalid)?;
        // Checked in constant time, and before the expiry, so that a forged
        // URL learns nothing from which answer it gets.
        self.mac(path, scope, exp)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Invalid)?;
        if exp <= unix_now() {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn mac(&self, path: &str, scope: &str, exp: u64) -> HmacSha256 {
        // HMAC takes a key of any length.
        let mut mac = HmacSha256::new_from_slice(&self.key).unwrap_or_else(|_| unreachable!());
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(scope.as_bytes());
        mac.update(b"\n");
        mac.update(exp.to_string().as_bytes());
        mac
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query_of(url: &str) -> SignedQuery {
        let query = url.split_once('?').map_or("", |(_, q)| q);
        let mut parsed = SignedQuery::default();
        for pair in query.split('&') {
            match pair.split_once('=') {
                Some(("for", v)) => parsed.scope = Some(v.into()),
                Some(("exp", v)) => parsed.exp = v.parse().ok(),
                Some(("sig", v)) => parsed.sig = Some(v.into()),
                _ => {}
            }
        }
        parsed
    }

    #[test]
    fn a_url_works_for_its_path_until_it_expires() {
        let signer = UrlSigner::new(b"key", Duration::from_secs(60));
        let url = signer.sign("/files/a", "u1");
        assert!(url.starts_with("/files/a?for=u1&exp="));
        assert_eq!(signer.verify("/files/a", &query_of(&url)), Ok(()));
        assert_eq!(
            signer.verify("/files/b", &query_of(&url)),
            Err(SignatureError::Invalid)
        );
        let old = signer.sign_until("/files/a", "u1", 1);
        assert_eq!(
            signer.verify("/files/a", &query_of(&old)),
            Err(SignatureError::Expired)
        );
    }

    #[test]
    fn a_changed_expiry_or_another_key_is_refused() {
        let signer = UrlSigner::new(b"key", Duration::from_secs(60));
        let url = signer.sign("/files/a", "u1");
        let mut query = query_of(&url);
        query.exp = query.exp.map(|e| e + 3600);
        assert_eq!(
            signer.verify("/files/a", &query),
            Err(SignatureError::Invalid)
        );
        let other = UrlSigner::new(b"other", Duration::from_secs(60));
        assert_eq!(
            other.verify("/files/a", &query_of(&url)),
            Err(SignatureError::Invalid)
        );
        assert_eq!(
            signer.verify("/files/a", &SignedQuery::default()),
            Err(SignatureError::Invalid)
        );
    }
}
