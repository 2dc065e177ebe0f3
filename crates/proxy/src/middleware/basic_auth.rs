//! `basic_auth`: HTTP Basic authentication (RFC 7617) against bcrypt or argon2 hashes.
//!
//! The `Authorization` header is parsed strictly ([`parse_credentials`]); anything else than
//! one well-formed `Basic` credential with a known user and the right password gets 401 and
//! the challenge `WWW-Authenticate: Basic realm="REALM", charset="UTF-8"` (RFC 7617 §2,
//! §2.1).
//!
//! Hashes are verified on tokio's blocking pool (a bcrypt of cost 10 takes tens of
//! milliseconds of CPU), at most one per CPU at a time so that a flood of wrong passwords
//! queues instead of taking every thread. A user that does not exist is verified against a
//! dummy hash of the same scheme and cost as the first configured user, so the time of a
//! refusal does not tell whether the user exists.
//!
//! Successful verifications are remembered for [`CACHE_TTL`] in a map of at most
//! [`CACHE_SIZE`] entries, keyed by a 128-bit keyed hash (SipHash under per-process random
//! keys) of the user and password: a logged-in client does not pay a bcrypt per request.
//! The password itself is never stored. The trade-off: someone who can read the gateway's
//! memory gets, for the users who logged in recently, a fast hash to attack instead of a
//! slow one. Credentials are never logged.
use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher, RandomState};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, Salt};
use base64::Engine;
use http::{HeaderMap, HeaderName, HeaderValue, header};
use shoal_config::BasicAuth;
use tokio::sync::Semaphore;
use tokio::time::Instant;

/// How long a successful verification is remembered.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(300);
/// Most verifications remembered at once.
pub(crate) const CACHE_SIZE: usize = 1024;

/// The password the dummy hash is made of (never matches a real request's: the dummy is
/// only checked for users that do not exist).
const DUMMY_PASSWORD: &[u8] = b"shoal: no such user";

/// A credential in `Authorization: Basic`, decoded.
#[derive(PartialEq, Eq)]
pub(crate) struct Credentials {
    pub(crate) user: String,
    pub(crate) password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password, even in a debug print.
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// Why a request's credentials were not even checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    Missing,
    SeveralHeaders,
    NotBasic,
    NotToken68,
    NotBase64,
    NotUtf8,
    NoColon,
    ControlCharacter,
}

/// The credentials of `Authorization: Basic <token68>`, strictly (RFC 9110 §11.6.2,
/// §11.4; RFC 7617 §2):
/// * exactly one `Authorization` field;
/// * `credentials = auth-scheme 1*SP token68`, the scheme `Basic` in any case (§11.1),
///   nothing after the token68;
/// * the token68 is base64 (RFC 4648 §4, padded, no line breaks, no bits left over);
/// * the decoded bytes are UTF-8 (we ask for `charset="UTF-8"`, RFC 7617 §2.1);
/// * `user-pass = user-id ":" password`, split at the first colon (a user-id cannot hold
///   one; a password can);
/// * neither part contains a control character (RFC 7617 §2: MUST NOT).
pub(crate) fn parse_credentials(headers: &HeaderMap) -> Result<Credentials, Malformed> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(Malformed::Missing)?;
    if values.next().is_some() {
        return Err(Malformed::SeveralHeaders);
    }
    let value = value.as_bytes();
    let scheme_end = value
        .iter()
        .position(|&b| b == b' ')
        .ok_or(Malformed::NotBasic)?;
    if !value[..scheme_end].eq_ignore_ascii_case(b"basic") {
        return Err(Malformed::NotBasic);
    }
    let token = value[scheme_end..].trim_ascii_start();
    let is_token68_char = |b: &u8| b.is_ascii_alphanumeric() || b"-._~+/".contains(b);
    let body_len = token.iter().take_while(|b| is_token68_char(b)).count();
    if body_len == 0 || token[body_len..].iter().any(|&b| b != b'=') {
        return Err(Malformed::NotToken68);
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(token)
        .map_err(|_| Malformed::NotBase64)?;
    let text = String::from_utf8(decoded).map_err(|_| Malformed::NotUtf8)?;
    let (user, password) = text.split_once(':').ok_or(Malformed::NoColon)?;
    if text.chars().any(char::is_control) {
        return Err(Malformed::ControlCharacter);
    }
    Ok(Credentials {
        user: user.to_owned(),
        password: password.to_owned(),
    })
}

/// The cost parameters of a stored hash: what makes verifying it slow.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Cost {
    /// bcrypt (`$2a$`, `$2b$`, `$2x$`, `$2y$`) and its cost (log2 of the rounds).
    Bcrypt(u32),
    /// argon2 (PHC string): algorithm, version and `m=,t=,p=`.
    Argon2(String),
    /// Neither: never matches.
    Unknown,
}

/// The cost of verifying `hash`.
pub(crate) fn cost_of(hash: &str) -> Cost {
    if hash.starts_with("$2") {
        match hash.parse::<bcrypt::HashParts>() {
            Ok(parts) => Cost::Bcrypt(parts.get_cost()),
            Err(_) => Cost::Unknown,
        }
    } else if hash.starts_with("$argon2") {
        match PasswordHash::new(hash) {
            Ok(h) => Cost::Argon2(format!("{}${:?}${}", h.algorithm, h.version, h.params)),
            Err(_) => Cost::Unknown,
        }
    } else {
        Cost::Unknown
    }
}

/// Verify `password` against `hash` (bcrypt or argon2 PHC). Blocking: call off the runtime.
fn verify(password: &[u8], hash: &str) -> bool {
    if hash.starts_with("$2") {
        bcrypt::verify(password, hash).unwrap_or(false)
    } else if hash.starts_with("$argon2") {
        PasswordHash::new(hash).is_ok_and(|h| {
            argon2::Argon2::default()
                .verify_password(password, &h)
                .is_ok()
        })
    } else {
        false
    }
}

/// A hash of [`DUMMY_PASSWORD`] costing as much to verify as `like`. Blocking.
fn dummy_like(like: &str) -> String {
    const SALT: [u8; 16] = *b"shoal-dummy-salt";
    match cost_of(like) {
        Cost::Bcrypt(cost) => bcrypt::hash_with_salt(DUMMY_PASSWORD, cost, SALT)
            .map(|p| p.format_for_version(bcrypt::Version::TwoB))
            .unwrap_or_default(),
        Cost::Argon2(_) => {
            let made = PasswordHash::new(like).and_then(|h| {
                let params = argon2::Params::try_from(&h)?;
                let salt = Salt::from_b64("c2hvYWwtZHVtbXktc2FsdA")?;
                argon2::Argon2::default()
                    .hash_password_customized(
                        DUMMY_PASSWORD,
                        Some(h.algorithm),
                        h.version,
                        params,
                        salt,
                    )
                    .map(|h| h.to_string())
            });
            made.unwrap_or_default()
        }
        Cost::Unknown => String::new(),
    }
}

/// One route's `basic_auth`.
#[derive(Debug)]
pub(crate) struct Authenticator {
    users: HashMap<String, String>,
    /// The hash unknown users are checked against (made on first need, or at build time on
    /// the blocking pool).
    dummy: Arc<OnceLock<String>>,
    /// The hash the dummy copies the cost of.
    dummy_model: String,
    challenge: HeaderValue,
    pub(crate) header_field: Option<HeaderName>,
    cache: Mutex<HashMap<u128, Instant>>,
    cache_keys: (RandomState, RandomState),
    permits: Semaphore,
    /// Hash verifications done (for tests: each attempt costs exactly one).
    verifications: AtomicU64,
}

impl Authenticator {
    pub(crate) fn new(def: &BasicAuth) -> Authenticator {
        let users: HashMap<String, String> = def.users.iter().cloned().collect();
        for (user, hash) in &def.users {
            if cost_of(hash) == Cost::Unknown {
                tracing::warn!(
                    user = %user,
                    "basic_auth: the hash of this user is neither bcrypt nor argon2; it never matches"
                );
            }
        }
        let dummy_model = def
            .users
            .first()
            .map(|(_, h)| h.clone())
            .unwrap_or_default();
        let dummy = Arc::new(OnceLock::new());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            let (dummy, model) = (Arc::clone(&dummy), dummy_model.clone());
            rt.spawn_blocking(move || {
                dummy.get_or_init(|| dummy_like(&model));
            });
        }
        let realm = def.realm.replace('\\', "\\\\").replace('"', "\\\"");
        let challenge =
            HeaderValue::try_from(format!("Basic realm=\"{realm}\", charset=\"UTF-8\""))
                .unwrap_or_else(|_| {
                    HeaderValue::from_static("Basic realm=\"shoal\", charset=\"UTF-8\"")
                });
        let cpus = std::thread::available_parallelism().map_or(2, |n| n.get());
        Authenticator {
            users,
            dummy,
            dummy_model,
            challenge,
            header_field: def.header_field.clone(),
            cache: Mutex::new(HashMap::new()),
            cache_keys: (RandomState::new(), RandomState::new()),
            permits: Semaphore::new(cpus),
            verifications: AtomicU64::new(0),
        }
    }

    /// `WWW-Authenticate` for a 401.
    pub(crate) fn challenge(&self) -> HeaderValue {
        self.challenge.clone()
    }

    fn cache_key(&self, c: &Credentials) -> u128 {
        let half = |s: &RandomState| {
            let mut h = s.build_hasher();
            h.write(c.user.as_bytes());
            h.write_u8(0xff);
            h.write(c.password.as_bytes());
            h.finish()
        };
        u128::from(half(&self.cache_keys.0)) << 64 | u128::from(half(&self.cache_keys.1))
    }

    /// The user the request authenticates as, if its credentials are valid.
    pub(crate) async fn authenticate(self: &Arc<Self>, headers: &HeaderMap) -> Option<String> {
        let creds = parse_credentials(headers).ok()?;
        let key = self.cache_key(&creds);
        let now = Instant::now();
        {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            if cache.get(&key).is_some_and(|until| *until > now) {
                return Some(creds.user);
            }
        }
        let _permit = self.permits.acquire().await.ok()?;
        let this = Arc::clone(self);
        let Credentials { user, password } = creds;
        let checked = tokio::task::spawn_blocking(move || {
            let ok = this.verify_blocking(&user, password.as_bytes());
            (ok, user)
        })
        .await;
        let (true, user) = checked.ok()? else {
            return None;
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CACHE_SIZE {
            let now = Instant::now();
            cache.retain(|_, until| *until > now);
            if cache.len() >= CACHE_SIZE
                && let Some(k) = cache.keys().next().copied()
            {
                cache.remove(&k);
            }
        }
        cache.insert(key, Instant::now() + CACHE_TTL);
        Some(user)
    }

    /// Exactly one hash verification, whether the user exists or not. Blocking.
    fn verify_blocking(&self, user: &str, password: &[u8]) -> bool {
        let (hash, known) = match self.users.get(user) {
            Some(hash) => (hash.as_str(), true),
            None => (self.dummy_hash(), false),
        };
        self.verifications.fetch_add(1, Ordering::Relaxed);
        verify(password, hash) && known
    }

    fn dummy_hash(&self) -> &str {
        self.dummy.get_or_init(|| dummy_like(&self.dummy_model))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth_header(value: &[u8]) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(value).unwrap(),
        );
        h
    }

    fn basic(user_pass: &[u8]) -> Vec<u8> {
        let mut v = b"Basic ".to_vec();
        v.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(user_pass)
                .as_bytes(),
        );
        v
    }

    fn parse(value: &[u8]) -> Result<(String, String), Malformed> {
        parse_credentials(&auth_header(value)).map(|c| (c.user, c.password))
    }

    #[test]
    fn rfc7617_example_and_the_first_colon() {
        // RFC 7617 §2: "Aladdin" / "open sesame".
        assert_eq!(
            parse(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Ok(("Aladdin".into(), "open sesame".into()))
        );
        assert_eq!(
            parse(&basic(b"bob:pa:ss")),
            Ok(("bob".into(), "pa:ss".into()))
        );
        assert_eq!(parse(&basic(b":x")), Ok((String::new(), "x".into())));
        assert_eq!(parse(&basic(b"bob:")), Ok(("bob".into(), String::new())));
    }

    #[test]
    fn scheme_is_case_insensitive_and_needs_a_space() {
        // RFC 9110 §11.1: auth-scheme is case-insensitive.
        assert!(parse(b"bAsIc QWxhZGRpbjpvcGVuIHNlc2FtZQ==").is_ok());
        // RFC 9110 §11.4: 1*SP between the scheme and the token68.
        assert!(parse(b"Basic   QWxhZGRpbjpvcGVuIHNlc2FtZQ==").is_ok());
        assert_eq!(parse(b"BasicQWxh"), Err(Malformed::NotBasic));
        assert_eq!(
            parse(b"Bearer QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Err(Malformed::NotBasic)
        );
        assert_eq!(parse(b"Basic"), Err(Malformed::NotBasic));
    }

    #[test]
    fn token68_only_and_nothing_after_it() {
        // RFC 9110 §11.2: token68 = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
        assert_eq!(parse(b"Basic "), Err(Malformed::NotToken68));
        assert_eq!(
            parse(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ== extra"),
            Err(Malformed::NotToken68)
        );
        assert_eq!(parse(b"Basic realm=\"x\""), Err(Malformed::NotToken68));
        assert_eq!(parse(b"Basic QWxh=ZGRp"), Err(Malformed::NotToken68));
    }

    #[test]
    fn token68_must_be_canonical_padded_base64() {
        // RFC 7617 §2 / RFC 4648 §4: the standard alphabet, with padding.
        assert_eq!(
            parse(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ"),
            Err(Malformed::NotBase64)
        );
        assert_eq!(parse(b"Basic QWxh-GRpbjpv"), Err(Malformed::NotBase64));
        assert_eq!(
            parse(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZR=="),
            Err(Malformed::NotBase64)
        );
    }

    #[test]
    fn decoded_text_is_utf8_with_a_colon_and_no_controls() {
        // RFC 7617 §2.1: charset="UTF-8".
        assert_eq!(parse(&basic(b"b\xffb:x")), Err(Malformed::NotUtf8));
        assert_eq!(
            parse(&basic("jos\u{e9}:\u{fc}ber".as_bytes())),
            Ok(("jos\u{e9}".into(), "\u{fc}ber".into()))
        );
        // RFC 7617 §2: user-pass = user-id ":" password.
        assert_eq!(parse(&basic(b"bob")), Err(Malformed::NoColon));
        // RFC 7617 §2: MUST NOT contain any control characters.
        assert_eq!(
            parse(&basic(b"bob:pa\x00ss")),
            Err(Malformed::ControlCharacter)
        );
        assert_eq!(
            parse(&basic(b"b\tob:pass")),
            Err(Malformed::ControlCharacter)
        );
        assert_eq!(
            parse(&basic(b"bob:pass\x7f")),
            Err(Malformed::ControlCharacter)
        );
    }

    #[test]
    fn exactly_one_authorization_field() {
        assert_eq!(
            parse_credentials(&HeaderMap::new()),
            Err(Malformed::Missing)
        );
        let mut h = auth_header(b"Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==");
        h.append(
            header::AUTHORIZATION,
            HeaderValue::from_static("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
        );
        assert_eq!(parse_credentials(&h), Err(Malformed::SeveralHeaders));
    }

    fn authenticator(users: &[(&str, String)]) -> Arc<Authenticator> {
        Arc::new(Authenticator::new(&BasicAuth {
            users: users
                .iter()
                .map(|(u, h)| ((*u).to_owned(), h.clone()))
                .collect(),
            realm: "my \"realm\"".into(),
            remove_header: false,
            header_field: None,
        }))
    }

    #[test]
    fn the_challenge_quotes_the_realm_and_names_the_charset() {
        let a = authenticator(&[]);
        assert_eq!(
            a.challenge(),
            "Basic realm=\"my \\\"realm\\\"\", charset=\"UTF-8\""
        );
    }

    #[tokio::test]
    async fn bcrypt_and_argon2_users_and_the_cache() {
        let bcrypt_hash = bcrypt::hash_with_salt("s3cret", 4, [7; 16])
            .unwrap()
            .to_string();
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(256, 1, 1, None).unwrap(),
        );
        let argon_hash = argon
            .hash_password(
                b"hunter2",
                Salt::from_b64("YWJjZGVmZ2hpamtsbW5vcA").unwrap(),
            )
            .unwrap()
            .to_string();
        let a = authenticator(&[("alice", bcrypt_hash), ("carol", argon_hash)]);
        let try_as = |user_pass: &[u8]| auth_header(&basic(user_pass));
        assert_eq!(
            a.authenticate(&try_as(b"alice:s3cret")).await.as_deref(),
            Some("alice")
        );
        assert_eq!(
            a.authenticate(&try_as(b"carol:hunter2")).await.as_deref(),
            Some("carol")
        );
        assert_eq!(a.authenticate(&try_as(b"alice:hunter2")).await, None);
        assert_eq!(a.authenticate(&try_as(b"carol:s3cret")).await, None);
        assert_eq!(a.authenticate(&try_as(b"mallory:s3cret")).await, None);
        let before = a.verifications.load(Ordering::Relaxed);
        // Cached: no verification for a client already logged in.
        assert_eq!(
            a.authenticate(&try_as(b"alice:s3cret")).await.as_deref(),
            Some("alice")
        );
        assert_eq!(a.verifications.load(Ordering::Relaxed), before);
        // ... but never for another password.
        assert_eq!(a.authenticate(&try_as(b"alice:s3cret ")).await, None);
        assert_eq!(a.verifications.load(Ordering::Relaxed), before + 1);
    }

    /// The unknown-user path does exactly the work of the wrong-password path: one
    /// verification, of a hash of the same scheme and cost. Prints the measured times.
    #[tokio::test]
    async fn an_unknown_user_costs_one_verification_of_the_same_cost() {
        let cost = 8;
        let hash = bcrypt::hash_with_salt("right", cost, [9; 16])
            .unwrap()
            .to_string();
        let a = authenticator(&[("alice", hash.clone())]);
        assert_eq!(cost_of(a.dummy_hash()), Cost::Bcrypt(cost));
        assert_eq!(cost_of(a.dummy_hash()), cost_of(&hash));
        let rounds = 12;
        let mut times = [Duration::ZERO; 2];
        let tries: [&[u8]; 2] = [b"nobody:wrong", b"alice:wrong"];
        for round in 0..rounds {
            // Alternate the order, so that warm-up favours neither.
            for step in 0..2 {
                let i = (step + round as usize) % 2;
                let before = a.verifications.load(Ordering::Relaxed);
                let start = Instant::now();
                assert_eq!(a.authenticate(&auth_header(&basic(tries[i]))).await, None);
                times[i] += start.elapsed();
                assert_eq!(a.verifications.load(Ordering::Relaxed), before + 1);
            }
        }
        let mean = |d: Duration| d.as_secs_f64() * 1000.0 / f64::from(rounds);
        eprintln!(
            "basic_auth timing (bcrypt cost {cost}, {rounds} tries each): unknown user {:.2} ms, \
             wrong password {:.2} ms",
            mean(times[0]),
            mean(times[1])
        );
    }

    #[test]
    fn argon2_dummy_has_the_same_parameters() {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(512, 2, 1, None).unwrap(),
        );
        let hash = argon
            .hash_password(b"pw", Salt::from_b64("YWJjZGVmZ2hpamtsbW5vcA").unwrap())
            .unwrap()
            .to_string();
        let dummy = dummy_like(&hash);
        assert_eq!(cost_of(&dummy), cost_of(&hash));
        assert!(matches!(cost_of(&dummy), Cost::Argon2(_)));
        assert!(!verify(b"pw", &dummy));
        assert!(verify(DUMMY_PASSWORD, &dummy));
    }
}
