//! Building YAML documents whose keys come out in the order they were written
//! (`serde_norway::Mapping` keeps insertion order), and the quantities Kubernetes writes.
use std::time::Duration;

use serde_norway::{Mapping, Value};

/// A mapping built key by key; keys keep the order they were added in.
#[derive(Debug, Default, Clone)]
pub(crate) struct Obj(Mapping);

impl Obj {
    pub(crate) fn new() -> Obj {
        Obj(Mapping::new())
    }

    /// Add `key: value`.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Obj {
        self.0.insert(Value::String(key.to_owned()), value.into());
        self
    }

    /// Add `key: value` when there is a value.
    pub(crate) fn with_opt(self, key: &str, value: Option<impl Into<Value>>) -> Obj {
        match value {
            Some(v) => self.with(key, v),
            None => self,
        }
    }

    /// Add `key: value` unless the value is an empty list or mapping.
    pub(crate) fn with_nonempty(self, key: &str, value: impl Into<Value>) -> Obj {
        let value = value.into();
        let empty = match &value {
            Value::Sequence(s) => s.is_empty(),
            Value::Mapping(m) => m.is_empty(),
            _ => false,
        };
        if empty { self } else { self.with(key, value) }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Obj> for Value {
    fn from(o: Obj) -> Value {
        Value::Mapping(o.0)
    }
}

/// A list of anything that becomes a value.
pub(crate) fn list<T: Into<Value>>(items: impl IntoIterator<Item = T>) -> Value {
    Value::Sequence(items.into_iter().map(Into::into).collect())
}

/// A mapping from string pairs, in the given order.
pub(crate) fn string_map<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Value {
    pairs
        .into_iter()
        .fold(Obj::new(), |o, (k, v)| o.with(k, v))
        .into()
}

/// One YAML document as text (without the `---` separator).
pub(crate) fn to_text(value: &Value) -> String {
    // Serialising a tree of plain strings, numbers and mappings cannot fail.
    serde_norway::to_string(value).unwrap_or_default()
}

/// Whole seconds for a Kubernetes field that counts seconds: rounded up, at least `min`.
pub(crate) fn seconds_up(d: Duration, min: u64) -> u64 {
    let ms = d.as_millis();
    let secs = u64::try_from(ms.div_ceil(1000)).unwrap_or(u64::MAX);
    secs.max(min)
}

/// CPU as Kubernetes writes it: whole cores as `2`, others in millicores (`250m`).
pub(crate) fn cpu_quantity(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        (millis / 1000).to_string()
    } else {
        format!("{millis}m")
    }
}

/// Memory as Kubernetes writes it: the largest binary unit that divides it (`128Mi`,
/// `1Gi`), else bytes.
pub(crate) fn memory_quantity(bytes: u64) -> String {
    const UNITS: [(&str, u64); 4] = [
        ("Ti", 1 << 40),
        ("Gi", 1 << 30),
        ("Mi", 1 << 20),
        ("Ki", 1 << 10),
    ];
    for (unit, size) in UNITS {
        if bytes >= size && bytes.is_multiple_of(size) {
            return format!("{}{unit}", bytes / size);
        }
    }
    bytes.to_string()
}

/// A duration as the stack file writes it (`250ms`, `10s`), exact to the microsecond.
pub(crate) fn duration(d: Duration) -> String {
    if d.subsec_nanos().is_multiple_of(1_000_000) {
        shoal_config::format_duration(d)
    } else {
        format!("{}ms", d.as_secs_f64() * 1000.0)
    }
}

/// A 64-bit FNV-1a hash in hex: a stable fingerprint of the gateway's stack file, so that a
/// changed file rolls the gateway's pods.
pub(crate) fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_keep_their_order() {
        let v: Value = Obj::new()
            .with("apiVersion", "v1")
            .with("kind", "Service")
            .with_opt("skipped", None::<String>)
            .with_nonempty("empty", list(Vec::<String>::new()))
            .with("metadata", Obj::new().with("name", "x"))
            .into();
        assert_eq!(
            to_text(&v),
            "apiVersion: v1\nkind: Service\nmetadata:\n  name: x\n"
        );
    }

    #[test]
    fn strings_that_look_like_other_types_are_quoted() {
        let v: Value = string_map([("port", "9090"), ("scrape", "true"), ("path", "/metrics")]);
        assert_eq!(
            to_text(&v),
            "port: '9090'\nscrape: 'true'\npath: /metrics\n"
        );
    }

    #[test]
    fn seconds_round_up_and_have_a_floor() {
        assert_eq!(seconds_up(Duration::from_millis(250), 1), 1);
        assert_eq!(seconds_up(Duration::from_millis(1000), 1), 1);
        assert_eq!(seconds_up(Duration::from_millis(1001), 1), 2);
        assert_eq!(seconds_up(Duration::ZERO, 1), 1);
        assert_eq!(seconds_up(Duration::ZERO, 0), 0);
    }

    #[test]
    fn quantities() {
        assert_eq!(cpu_quantity(250), "250m");
        assert_eq!(cpu_quantity(2000), "2");
        assert_eq!(cpu_quantity(1500), "1500m");
        assert_eq!(memory_quantity(128 << 20), "128Mi");
        assert_eq!(memory_quantity(1 << 30), "1Gi");
        assert_eq!(memory_quantity(1536 << 10), "1536Ki");
        assert_eq!(memory_quantity(1_000_000), "1000000");
    }

    #[test]
    fn durations_round_trip_through_the_stack_file_syntax() {
        for d in [
            Duration::from_millis(250),
            Duration::from_secs(10),
            Duration::from_micros(1500),
        ] {
            assert_eq!(shoal_config::parse_duration(&duration(d)), Ok(d), "{d:?}");
        }
    }

    #[test]
    fn fingerprints_differ_for_different_text() {
        assert_eq!(fingerprint("a"), fingerprint("a"));
        assert_ne!(fingerprint("a"), fingerprint("b"));
        assert_eq!(fingerprint("").len(), 16);
    }
}
