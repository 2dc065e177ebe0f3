//! Where each field is: a map from a field's dotted path to its place in the file.
//!
//! serde gives us typed values but forgets positions once parsing succeeded, so semantic errors
//! ("unknown service `user`") would have nowhere to point. We walk the same text once more with
//! the event parser serde-saphyr itself uses (granit-parser, re-exported by it, so one YAML
//! reading of the file) and remember, for every key and value, its path (`routes[0].service`)
//! and its line and column. Errors then look up the path of the field they are about.
//!
//! serde-saphyr can carry positions on the values themselves (`Spanned<T>`), which would make
//! this second walk unnecessary; that means a `Spanned` on every raw field the validator points
//! at, a change to the whole schema left for its own step.
use std::collections::HashMap;

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, StructureStyle};

/// A place in the source: 1-based line and column, and whether the scalar was quoted (then the
/// text starts one column later than the marker).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Place {
    pub(crate) line: usize,
    pub(crate) column: usize,
    pub(crate) quoted: bool,
}

/// Positions of keys and values by path.
#[derive(Debug, Default)]
pub(crate) struct Locations {
    keys: HashMap<String, Place>,
    values: HashMap<String, Place>,
}

enum Frame {
    Map {
        path: String,
        pending_key: Option<String>,
        /// A block mapping's own place is where its first `:` stands (where the mapping is
        /// recognised), set when its first key is seen.
        place_at_first_key: bool,
    },
    Seq {
        path: String,
        next: usize,
    },
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

impl Locations {
    /// Index `source`. YAML errors are left to serde, which reports them with positions; here
    /// we simply stop at the first one.
    pub(crate) fn index(source: &str) -> Locations {
        let mut locs = Locations::default();
        let mut parser = Parser::new_from_str(source);
        let mut stack: Vec<Frame> = Vec::new();
        while let Some(Ok((event, span))) = parser.next_event() {
            let place = Place {
                line: span.start.line(),
                column: span.start.col() + 1,
                quoted: false,
            };
            let key_end = Place {
                line: span.end.line(),
                column: span.end.col() + 1,
                quoted: false,
            };
            // The path a new node gets, given the frame it appears in.
            let node_path = |stack: &mut Vec<Frame>,
                             locs: &mut Locations,
                             scalar: Option<(&str, Place)>|
             -> Option<String> {
                match stack.last_mut() {
                    None => Some(String::new()),
                    Some(Frame::Seq { path, next }) => {
                        let p = format!("{path}[{next}]");
                        *next += 1;
                        Some(p)
                    }
                    Some(Frame::Map {
                        path,
                        pending_key,
                        place_at_first_key,
                    }) => match pending_key.take() {
                        Some(key) => Some(join(path, &key)),
                        None => {
                            // This node is a key.
                            if std::mem::take(place_at_first_key) {
                                let at = if scalar.is_some() { key_end } else { place };
                                locs.values.entry(path.clone()).or_insert(at);
                            }
                            if let Some((text, place)) = scalar {
                                locs.keys.insert(join(path, text), place);
                                *pending_key = Some(text.to_owned());
                            } else {
                                *pending_key = Some("?".to_owned());
                            }
                            None
                        }
                    },
                }
            };
            match event {
                Event::StreamEnd => break,
                Event::Scalar(text, style, ..) => {
                    let place = Place {
                        quoted: !matches!(style, ScalarStyle::Plain),
                        ..place
                    };
                    if let Some(p) = node_path(&mut stack, &mut locs, Some((&text, place))) {
                        locs.values.insert(p, place);
                    }
                }
                Event::Alias(_) => {
                    node_path(&mut stack, &mut locs, None);
                }
                Event::MappingStart(style, ..) => {
                    let p = node_path(&mut stack, &mut locs, None).unwrap_or_default();
                    let block = style == StructureStyle::Block;
                    if !block {
                        locs.values.entry(p.clone()).or_insert(place);
                    }
                    stack.push(Frame::Map {
                        path: p,
                        pending_key: None,
                        place_at_first_key: block,
                    });
                }
                Event::SequenceStart(..) => {
                    let p = node_path(&mut stack, &mut locs, None).unwrap_or_default();
                    locs.values.entry(p.clone()).or_insert(place);
                    stack.push(Frame::Seq { path: p, next: 0 });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                _ => {}
            }
        }
        locs
    }

    /// The place of a field's value, else its key, else the nearest enclosing field.
    pub(crate) fn value(&self, path: &str) -> Place {
        let mut p = path;
        loop {
            if let Some(place) = self.values.get(p).or_else(|| self.keys.get(p)) {
                return *place;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p = &p[..i],
                None => {
                    return Place {
                        line: 1,
                        column: 1,
                        quoted: false,
                    };
                }
            }
        }
    }

    /// The place of a field's key (for "unknown field" and "missing" errors), else its value.
    pub(crate) fn key(&self, path: &str) -> Place {
        self.keys
            .get(path)
            .copied()
            .unwrap_or_else(|| self.value(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_keys_and_values_by_path() {
        let src = "services:\n  users:\n    replicas: 2\nroutes:\n  - match: \"Path(`/`)\"\n    service: users\n";
        let l = Locations::index(src);
        assert_eq!(
            l.key("services.users.replicas"),
            Place {
                line: 3,
                column: 5,
                quoted: false
            }
        );
        assert_eq!(
            l.value("services.users.replicas"),
            Place {
                line: 3,
                column: 15,
                quoted: false
            }
        );
        assert_eq!(
            l.value("routes[0].match"),
            Place {
                line: 5,
                column: 12,
                quoted: true
            }
        );
        assert_eq!(
            l.value("routes[0].service"),
            Place {
                line: 6,
                column: 14,
                quoted: false
            }
        );
        // unknown paths fall back to the nearest known parent
        assert_eq!(l.value("routes[0].service.x"), l.value("routes[0].service"));
        // A block mapping is where its first `:` stands; a flow mapping at its `{`.
        assert_eq!(
            l.value("routes[0]"),
            Place {
                line: 5,
                column: 10,
                quoted: false
            }
        );
        let flow = Locations::index("a:\n  b: { c: 1 }\n");
        assert_eq!(
            flow.value("a.b"),
            Place {
                line: 2,
                column: 6,
                quoted: false
            }
        );
    }
}
