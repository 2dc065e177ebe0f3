//! Middlewares that decide who may pass: `basic_auth` (users written inline or read from an
//! htpasswd file, each hash checked to be bcrypt or argon2 so that a typo cannot let anyone
//! in; no message ever repeats a hash) and `ip_allow_list` (address ranges, host bits cleared
//! as Traefik does).
use std::net::IpAddr;
use std::path::Path;

use super::Cx;
use crate::model::*;
use crate::raw::*;

impl Cx<'_> {
    pub(super) fn basic_auth(
        &mut self,
        path: &str,
        raw: RawBasicAuth,
        base: &Path,
    ) -> Option<Middleware> {
        let before = self.diags.len();
        let mut users: Vec<(String, String)> = Vec::new();
        for (i, entry) in raw.users.iter().flatten().enumerate() {
            let field = format!("{path}.users[{i}]");
            match htpasswd_entry(entry) {
                Ok(user) => self.add_user(&field, "", user, &mut users),
                Err(e) => self.error_hint(&field, e, Some(REGENERATE.into())),
            }
        }
        if let Some(file) = &raw.users_file {
            let field = format!("{path}.users_file");
            if let Some(p) = self.existing_file(&field, file, base) {
                let shown = file.trim();
                match read_bounded(&p, MAX_USERS_FILE) {
                    Err(e) => self.error(&field, format!("cannot read {}: {e}", p.display())),
                    Ok(None) => self.error(
                        &field,
                        format!(
                            "{} is larger than {} MiB",
                            p.display(),
                            MAX_USERS_FILE >> 20
                        ),
                    ),
                    Ok(Some(text)) => {
                        for (n, line) in text.lines().enumerate() {
                            let line = line.trim();
                            if line.is_empty() || line.starts_with('#') {
                                continue;
                            }
                            let place = format!("{shown}:{}: ", n + 1);
                            match htpasswd_entry(line) {
                                Ok(user) => self.add_user(&field, &place, user, &mut users),
                                Err(e) => self.error_hint(
                                    &field,
                                    format!("{place}{e}"),
                                    Some(REGENERATE.into()),
                                ),
                            }
                        }
                    }
                }
            }
        }
        let given = raw.users.as_ref().is_some_and(|u| !u.is_empty()) || raw.users_file.is_some();
        if !given {
            self.misplaced(
                path,
                "needs at least one user: `users: [\"NAME:HASH\"]` or `users_file: FILE` \
                 (htpasswd format)",
            );
        } else if users.is_empty() && self.diags.len() == before {
            self.error(
                &format!("{path}.users_file"),
                "lists no user (blank lines and `#` comments do not count)",
            );
        }
        let realm = raw.realm.unwrap_or_else(|| "shoal".to_owned());
        if realm.is_empty() || realm.contains('"') || realm.chars().any(char::is_control) {
            self.error(
                &format!("{path}.realm"),
                "a realm is non-empty text without `\"` or control characters (it is sent \
                 quoted in `WWW-Authenticate`)",
            );
        }
        let header_field = raw
            .header_field
            .and_then(|h| self.managed_header_name(&format!("{path}.header_field"), h.trim()));
        Some(Middleware::BasicAuth(BasicAuth {
            users,
            realm,
            remove_header: raw.remove_header.unwrap_or(false),
            header_field,
        }))
    }

    /// Add a user unless it is already there (then report it, `place` naming the line of a
    /// users file).
    fn add_user(
        &mut self,
        field: &str,
        place: &str,
        user: (String, String),
        users: &mut Vec<(String, String)>,
    ) {
        if users.iter().any(|(u, _)| *u == user.0) {
            self.error(field, format!("{place}user `{}` is listed twice", user.0));
        } else {
            users.push(user);
        }
    }

    pub(super) fn ip_allow_list(&mut self, path: &str, raw: RawIpAllowList) -> Option<Middleware> {
        let field = format!("{path}.source_range");
        let Some(list) = raw.source_range else {
            self.misplaced(
                path,
                "needs `source_range`: the addresses or CIDR ranges allowed, e.g. \
                 `[10.0.0.0/8, 127.0.0.1]`",
            );
            return None;
        };
        if list.is_empty() {
            self.error(&field, "needs at least one address or CIDR range");
        }
        let mut source_range = Vec::new();
        for (i, item) in list.iter().enumerate() {
            match ip_range(item) {
                Ok(r) => source_range.push(r),
                Err(e) => self.error(&format!("{field}[{i}]"), e),
            }
        }
        Some(Middleware::IpAllowList(IpAllowList {
            source_range,
            depth: raw.depth.unwrap_or(0),
        }))
    }
}

/// Largest `users_file` read.
const MAX_USERS_FILE: u64 = 64 << 20;

/// The text of `path` if it has at most `limit` bytes (files in `/proc` report no size, so
/// the bound is on what is read); None if it has more.
fn read_bounded(path: &Path, limit: u64) -> std::io::Result<Option<String>> {
    use std::io::Read;
    let mut text = String::new();
    std::fs::File::open(path)?
        .take(limit + 1)
        .read_to_string(&mut text)?;
    Ok((text.len() as u64 <= limit).then_some(text))
}

/// What to do about a refused hash.
const REGENERATE: &str = "regenerate it with `htpasswd -B` (bcrypt), or use an argon2 hash";

/// An htpasswd line `user:hash` whose hash shoal can verify. The error never contains the
/// hash or anything after the user name.
fn htpasswd_entry(entry: &str) -> Result<(String, String), String> {
    let Some((user, hash)) = entry.trim().split_once(':') else {
        return Err("expected `user:hash` (htpasswd format)".into());
    };
    let user = user.trim();
    if user.is_empty() || user.chars().any(char::is_control) {
        return Err("expected `user:hash` with a user name before the `:`".into());
    }
    let hash = hash.trim();
    if hash.is_empty() {
        return Err(format!("user `{user}` has no password hash"));
    }
    match hash_scheme(hash) {
        Ok(()) => Ok((user.to_owned(), hash.to_owned())),
        Err(found) => Err(format!(
            "user `{user}`: the password hash is {found}, which shoal does not accept"
        )),
    }
}

/// Ok for a well-formed bcrypt (`$2a$`, `$2b$`, `$2y$`) or argon2 (PHC format) hash; else
/// what it looks like, named by its scheme only.
fn hash_scheme(hash: &str) -> Result<(), &'static str> {
    if ["$2a$", "$2b$", "$2y$"].iter().any(|p| hash.starts_with(p)) {
        return bcrypt_hash(hash)
            .then_some(())
            .ok_or("a malformed bcrypt hash (expected `$2y$COST$` and 53 characters)");
    }
    if ["$argon2id$", "$argon2i$", "$argon2d$"]
        .iter()
        .any(|p| hash.starts_with(p))
    {
        return argon2_hash(hash).then_some(()).ok_or(
            "a malformed argon2 hash (expected the PHC format \
             `$argon2id$v=19$m=…,t=…,p=…$SALT$HASH`)",
        );
    }
    let crypt = |s: &str| {
        s.len() == 13
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'/')
    };
    Err(match hash {
        h if h.starts_with("$apr1$") => "Apache MD5 (`$apr1$`)",
        h if h.starts_with("{SHA}") => "SHA-1 (`{SHA}`)",
        h if h.starts_with("{SSHA}") => "salted SHA-1 (`{SSHA}`)",
        h if h.starts_with("$1$") => "MD5-crypt (`$1$`)",
        h if h.starts_with("$5$") => "SHA-256-crypt (`$5$`)",
        h if h.starts_with("$6$") => "SHA-512-crypt (`$6$`)",
        h if h.starts_with("$y$") => "yescrypt (`$y$`)",
        h if h.starts_with("$2x$") => "bcrypt's buggy `$2x$` variant",
        h if h.starts_with('$') => "an unknown crypt scheme",
        h if crypt(h) => "DES crypt (or plain text)",
        _ => "plain text or an unknown scheme",
    })
}

/// `$2y$CC$` then 53 characters of bcrypt's base64 (22 of salt, 31 of hash), cost 4–31.
fn bcrypt_hash(hash: &str) -> bool {
    let b = hash.as_bytes();
    let bcrypt64 = |c: &u8| c.is_ascii_alphanumeric() || *c == b'.' || *c == b'/';
    b.len() == 60
        && b[4].is_ascii_digit()
        && b[5].is_ascii_digit()
        && (4..=31).contains(&((b[4] - b'0') * 10 + (b[5] - b'0')))
        && b[6] == b'$'
        && b[7..].iter().all(bcrypt64)
}

/// `$argon2id$[v=19$]m=M,t=T,p=P$SALT$HASH` with base64 (no padding) salt and hash.
fn argon2_hash(hash: &str) -> bool {
    let mut parts: Vec<&str> = hash.split('$').skip(2).collect();
    if parts.first().is_some_and(|v| v.starts_with("v=")) {
        let v = parts.remove(0);
        if !matches!(v, "v=16" | "v=19") {
            return false;
        }
    }
    let [params, salt, out] = parts[..] else {
        return false;
    };
    let mut keys: Vec<&str> = Vec::new();
    for kv in params.split(',') {
        match kv.split_once('=') {
            Some((k @ ("m" | "t" | "p"), v))
                if !keys.contains(&k) && v.parse::<u32>().is_ok_and(|n| n > 0) =>
            {
                keys.push(k);
            }
            _ => return false,
        }
    }
    let b64 = |s: &str, min: usize| {
        (min..=128).contains(&s.len())
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    };
    keys.len() == 3 && b64(salt, 11) && b64(out, 16)
}

/// `10.0.0.0/8`, `fd00::/8`, or a bare address (a /32 or /128). Host bits are cleared, as
/// Traefik (Go's `net.ParseCIDR`) does.
fn ip_range(text: &str) -> Result<IpRange, String> {
    let t = text.trim();
    let (addr, prefix) = match t.split_once('/') {
        Some((a, p)) => (a, Some(p)),
        None => (t, None),
    };
    let addr: IpAddr = addr.parse().map_err(|_| {
        format!("`{t}` is not an address or a CIDR range like `10.0.0.0/8` or `fd00::/8`")
    })?;
    let (max, family) = if addr.is_ipv4() { (32, 4) } else { (128, 6) };
    let prefix = match prefix {
        None => max,
        Some(p) => p.parse::<u8>().ok().filter(|p| *p <= max).ok_or_else(|| {
            format!("`{t}`: the prefix length of an IPv{family} range is 0 to {max}")
        })?,
    };
    let addr = match addr {
        IpAddr::V4(a) => {
            let mask = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4((u32::from(a) & mask).into())
        }
        IpAddr::V6(a) => {
            let mask = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6((u128::from(a) & mask).into())
        }
    };
    Ok(IpRange { addr, prefix })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_ranges_clear_host_bits() {
        let r = ip_range("10.1.2.3/8").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("10.0.0.0".into(), 8));
        let r = ip_range("::1").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("::1".into(), 128));
        let r = ip_range("0.0.0.0/0").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("0.0.0.0".into(), 0));
        let r = ip_range("fd00:1::5/16").unwrap();
        assert_eq!((r.addr.to_string(), r.prefix), ("fd00::".into(), 16));
        assert!(ip_range("10.0.0.0/33").unwrap_err().contains("0 to 32"));
        assert!(ip_range("::/129").unwrap_err().contains("0 to 128"));
        assert!(ip_range("10.0.0/8").unwrap_err().contains("not an address"));
    }
}
