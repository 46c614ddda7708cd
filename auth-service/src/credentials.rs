//! Credentials, parsed at the edge so that a value that exists is valid:
//! e-mail addresses, passwords, confirmation codes and session tokens.
//!
//! Secrets are stored only as hashes: passwords with Argon2id (slow on
//! purpose, run off the async workers), codes and tokens with SHA-256 (a
//! token has 256 random bits, so a fast hash is enough; a code is short, but
//! lives 15 minutes and locks after a few wrong tries).

use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha2::{Digest, Sha256};
use shared_proto::client::{MAX_ECHOED_CHARS, excerpt};
use tokio::sync::Semaphore;

/// Bounds on a password's length, in characters.
pub const PASSWORD_MIN_CHARS: usize = 8;
pub const PASSWORD_MAX_CHARS: usize = 128;

/// A normalised e-mail address: trimmed, lower-cased, plausibly deliverable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    /// Parses an address. Deliberately simple: one `@`, a non-empty local
    /// part, a domain with a dot and no spaces; the mail itself proves the rest.
    pub fn parse(raw: &str) -> Result<Email, String> {
        let email = raw.trim().to_lowercase();
        // Quoted cut short: a reply never grows with what the client sent.
        let invalid = || {
            format!(
                "{} is not a valid e-mail address.",
                excerpt(&format!("{:?}", raw.trim()), MAX_ECHOED_CHARS)
            )
        };
        if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(invalid());
        }
        let Some((local, domain)) = email.split_once('@') else {
            return Err(invalid());
        };
        let domain_ok = domain.contains('.')
            && !domain.contains('@')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty() || local.len() > 64 || !domain_ok {
            return Err(invalid());
        }
        Ok(Email(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password that meets the length policy. Never logged.
pub struct Password(String);

impl Password {
    /// Checks a new password against the policy.
    pub fn parse_new(raw: &str) -> Result<Password, String> {
        let chars = raw.chars().count();
        if chars < PASSWORD_MIN_CHARS {
            return Err(format!(
                "The password must have at least {PASSWORD_MIN_CHARS} characters."
            ));
        }
        if chars > PASSWORD_MAX_CHARS {
            return Err(format!(
                "The password must have at most {PASSWORD_MAX_CHARS} characters."
            ));
        }
        Ok(Password(raw.to_owned()))
    }

    /// Accepts any password a login could match: not empty, not absurdly long.
    pub fn parse_attempt(raw: &str) -> Result<Password, String> {
        if raw.is_empty() {
            return Err("The password is empty.".into());
        }
        if raw.chars().count() > PASSWORD_MAX_CHARS {
            return Err(format!(
                "The password must have at most {PASSWORD_MAX_CHARS} characters."
            ));
        }
        Ok(Password(raw.to_owned()))
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Hashes and verifies passwords with Argon2id on the blocking pool, at most
/// one per core at a time: each hash takes ~19 MiB, and a burst of logins must
/// not turn into a burst of memory.
#[derive(Clone)]
pub struct PasswordHasherPool {
    permits: Arc<Semaphore>,
}

impl Default for PasswordHasherPool {
    fn default() -> Self {
        let cores = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        PasswordHasherPool {
            permits: Arc::new(Semaphore::new(cores)),
        }
    }
}

impl PasswordHasherPool {
    pub async fn hash(&self, password: Password) -> anyhow::Result<String> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let salt = SaltString::generate(&mut OsRng);
            Argon2::default()
                .hash_password(password.0.as_bytes(), &salt)
                .map(|hash| hash.to_string())
                .map_err(|err| anyhow::anyhow!("hashing a password: {err}"))
        })
        .await?
    }

    /// True if `password` matches `stored`. With `None` (no such account) it
    /// still spends the time of one verification, so response times do not
    /// tell which addresses have accounts.
    pub async fn verify(&self, password: Password, stored: Option<String>) -> anyhow::Result<bool> {
        let _permit = self.permits.acquire().await?;
        tokio::task::spawn_blocking(move || {
            let stored = stored.unwrap_or_else(|| DUMMY_HASH.clone());
            let parsed =
                PasswordHash::new(&stored).map_err(|err| anyhow::anyhow!("stored hash: {err}"))?;
            Ok(Argon2::default()
                .verify_password(password.0.as_bytes(), &parsed)
                .is_ok())
        })
        .await?
    }
}

static DUMMY_HASH: LazyLock<String> = LazyLock::new(|| {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(b"not a real password", &salt)
        .map(|h| h.to_string())
        .unwrap_or_default()
});

/// Letters and digits that cannot be mistaken for each other when read off
/// a mail and typed in: no 0/O, 1/I/L.
const CODE_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
/// 8 symbols from 31: about 40 bits.
const CODE_LEN: usize = 8;

/// A fresh confirmation code from the operating system's generator.
pub fn new_confirmation_code() -> String {
    let mut rng = OsRng;
    (0..CODE_LEN)
        .map(|_| {
            // Rejection sampling keeps every symbol equally likely.
            loop {
                let byte = (rng.next_u32() & 0xff) as usize;
                let limit = 256 - 256 % CODE_ALPHABET.len();
                if byte < limit {
                    return CODE_ALPHABET[byte % CODE_ALPHABET.len()] as char;
                }
            }
        })
        .collect()
}

/// How a code typed by a person is compared: case and spaces do not matter.
pub fn normalise_code(typed: &str) -> String {
    typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .flat_map(char::to_uppercase)
        .collect()
}

/// A random salt for a code hash, hex.
pub fn new_salt() -> String {
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The stored form of a confirmation code.
pub fn hash_code(salt: &str, code: &str) -> String {
    let mut hasher = Sha256::new();
    hasher.update(salt.as_bytes());
    hasher.update(b":");
    hasher.update(normalise_code(code).as_bytes());
    hex::encode(hasher.finalize())
}

/// Compares two hex digests in time independent of where they differ.
pub fn digests_equal(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// A new session token (256 random bits, URL-safe base64) and its stored hash.
pub fn new_session_token() -> (String, String) {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
    let hash = hash_token(&token);
    (token, hash)
}

/// The stored form of a session token; also its session id on the bus, and
/// what HTTP verifiers compute from a Bearer token (`bus::sessions`).
pub fn hash_token(token: &str) -> String {
    shared_proto::bus::sessions::session_id_of(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_trimmed_and_lower_cased() {
        assert_eq!(
            Email::parse("  Ana@Example.COM ").map(|e| e.0),
            Ok("ana@example.com".into())
        );
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in [
            "",
            "ana",
            "ana@",
            "@example.com",
            "ana@example",
            "a na@example.com",
            "ana@@example.com",
            "ana@example..com",
            "ana@.example.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn a_refused_email_is_quoted_cut_short() {
        let huge = format!("{}@example.com", "a".repeat(9000));
        let message = Email::parse(&huge).expect_err("too long");
        assert!(message.chars().count() < 200, "{message}");
        assert!(message.contains("aaaa"), "{message}");
        let message = Email::parse("ana@").expect_err("no domain");
        assert_eq!(message, "\"ana@\" is not a valid e-mail address.");
    }

    #[test]
    fn password_policy_bounds() {
        assert!(Password::parse_new("short").is_err());
        assert!(Password::parse_new(&"x".repeat(129)).is_err());
        assert!(Password::parse_new("long enough").is_ok());
        assert!(Password::parse_attempt("").is_err());
        assert!(Password::parse_attempt("x").is_ok());
    }

    #[test]
    fn codes_use_the_unambiguous_alphabet_and_differ() {
        let a = new_confirmation_code();
        let b = new_confirmation_code();
        assert_eq!(a.len(), CODE_LEN);
        assert!(a.bytes().all(|c| CODE_ALPHABET.contains(&c)));
        assert_ne!(a, b, "two codes in a row were equal");
    }

    #[test]
    fn a_code_matches_however_it_is_typed() {
        let salt = new_salt();
        let stored = hash_code(&salt, "ABCD2345");
        assert!(digests_equal(&stored, &hash_code(&salt, " abcd-2345 ")));
        assert!(!digests_equal(&stored, &hash_code(&salt, "ABCD2346")));
        assert!(!digests_equal(&stored, &hash_code(&new_salt(), "ABCD2345")));
    }

    #[test]
    fn tokens_are_long_and_hashed() {
        let (token, hash) = new_session_token();
        assert!(token.len() >= 43, "256 bits in base64");
        assert_eq!(hash, hash_token(&token));
        assert_ne!(token, hash);
    }

    #[tokio::test]
    async fn argon2_hashes_verify() {
        let pool = PasswordHasherPool::default();
        let stored = pool
            .hash(Password::parse_new("correct horse").expect("valid"))
            .await
            .expect("hash");
        assert!(stored.starts_with("$argon2id$"));
        assert!(
            pool.verify(
                Password::parse_attempt("correct horse").expect("valid"),
                Some(stored.clone())
            )
            .await
            .expect("verify")
        );
        assert!(
            !pool
                .verify(
                    Password::parse_attempt("wrong horse").expect("valid"),
                    Some(stored)
                )
                .await
                .expect("verify")
        );
        assert!(
            !pool
                .verify(Password::parse_attempt("anything").expect("valid"), None)
                .await
                .expect("verify")
        );
    }

    #[test]
    fn an_email_is_at_most_254_characters() {
        let domain = format!("{}.com", "d".repeat(185));
        let longest = format!("{}@{domain}", "a".repeat(64));
        assert_eq!(longest.len(), 254);
        assert_eq!(Email::parse(&longest).map(|e| e.0), Ok(longest.clone()));
        let longer = format!("{}@d{domain}", "a".repeat(64));
        assert!(Email::parse(&longer).is_err());
    }

    #[test]
    fn an_email_has_one_at_and_a_domain_with_a_dot_inside_it() {
        for bad in [
            "a@b@example.com",
            "ana@example.com.",
            "ana@.",
            "ana@example .com",
            "ana\t@example.com",
            "ana@exam\u{0}ple.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Email::parse("ana.b+tag@mail.example.co.uk").is_ok());
        assert_eq!(
            Email::parse("\n\tBen@Example.com\r\n").map(|e| e.0),
            Ok("ben@example.com".into()),
            "surrounding whitespace of any kind is trimmed"
        );
    }

    #[test]
    fn a_register_password_is_8_to_128_characters() {
        assert!(Password::parse_new(&"p".repeat(7)).is_err());
        assert!(Password::parse_new(&"p".repeat(8)).is_ok());
        assert!(Password::parse_new(&"p".repeat(128)).is_ok());
        assert!(Password::parse_new(&"p".repeat(129)).is_err());
        // Characters, not bytes: 8 two-byte characters are enough, 128 not too many.
        assert!(Password::parse_new(&"é".repeat(8)).is_ok());
        assert!(Password::parse_new(&"é".repeat(128)).is_ok());
        assert!(Password::parse_new(&"é".repeat(7)).is_err());
    }

    #[test]
    fn a_login_password_is_1_to_128_characters() {
        assert!(Password::parse_attempt(&"p".repeat(128)).is_ok());
        assert!(Password::parse_attempt(&"p".repeat(129)).is_err());
        assert!(Password::parse_attempt(&"é".repeat(128)).is_ok());
        assert!(Password::parse_attempt(" ").is_ok(), "not trimmed");
    }

    #[test]
    fn a_password_never_shows_in_debug_output() {
        let password = Password::parse_new("correct-horse-battery").expect("valid");
        let shown = format!("{password:?}");
        assert!(!shown.contains("horse"), "{shown}");
    }

    #[test]
    fn a_code_is_compared_ignoring_case_spaces_and_hyphens() {
        assert_eq!(normalise_code("K7M2-QX9P"), "K7M2QX9P");
        assert_eq!(normalise_code(" k7m2 qx9p\n"), "K7M2QX9P");
        assert_eq!(normalise_code("k-7-m-2\tq x 9 p"), "K7M2QX9P");
        assert_ne!(
            normalise_code("K7M2_QX9P"),
            "K7M2QX9P",
            "only hyphens are dropped"
        );
    }

    #[test]
    fn a_code_has_8_symbols_none_of_them_easily_mistaken() {
        assert_eq!(CODE_LEN, 8);
        for confusable in *b"01OIL" {
            assert!(
                !CODE_ALPHABET.contains(&confusable),
                "{}",
                confusable as char
            );
        }
        let code = new_confirmation_code();
        assert_eq!(normalise_code(&code), code, "a code is typed as mailed");
    }

    #[test]
    fn digests_of_different_lengths_never_match() {
        assert!(digests_equal("abcd", "abcd"));
        assert!(!digests_equal("abcd", "abc"));
        assert!(!digests_equal("", "a"));
        assert!(!digests_equal("abcd", "abce"));
    }
}
