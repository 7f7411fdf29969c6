//! The stored text of a record's fields (the `fields` column of `records`), a JSON object.
//!
//! Most of a row's fields were written by one op, so they share a version and a writer. That
//! pair is written once, under the key `""`, as `[version, "writer"]`; a field carrying it is
//! written as its bare value, any other field as `["value", version, "writer"]`:
//!
//! ```text
//! {"":[7,"420322105"],"name":"张三","status":["CountyAnnounced",9,"420322"]}
//! ```
//!
//! Before this form every field was an array and there was no `""` key; such rows read the same.
//! The pair is written only when at least two fields share it (else it saves nothing). A field
//! may itself be named `""` (the hub refuses such names, but the format does not depend on it):
//! it is always written as an array of three, which the pair, an array of two, is not.

use crate::merge::{FieldState, Fields, Text};
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The key under which a row's common version and writer are stored.
const COMMON: &str = "";

/// The stored text of `fields` (what [`parse`] reads back).
pub fn to_json(fields: &Fields) -> String {
    let mut out = Vec::with_capacity(64 + 32 * fields.len());
    write_json(fields, &mut out);
    String::from_utf8(out).expect("serde_json writes UTF-8")
}

/// [`to_json`] appended to `out`: a writer encoding row after row reuses one buffer instead of
/// growing a new string for each (`json_bench` measures both).
pub fn write_json(fields: &Fields, out: &mut Vec<u8>) {
    serde_json::to_writer(out, &Stored { fields, common: common_pair(fields) }).expect("field maps have string keys")
}

/// Fields from their stored text, in either form; or what is wrong with it and where, naming
/// fields but never a value (a stored value may be an ID number or a phone).
pub fn parse(text: &str) -> Result<Fields, String> {
    let mut de = serde_json::Deserializer::from_str(text);
    let parsed = de.deserialize_map(FieldsVisitor).and_then(|fields| de.end().map(|()| fields));
    parsed.map_err(|e| describe(&e))
}

/// Starts the errors this module words itself (they name fields, not values).
const OWN: &str = "stored form: ";

/// `e` without the value serde's own messages quote ("invalid type: string \"…\"").
fn describe(e: &serde_json::Error) -> String {
    let shown = e.to_string();
    if shown.starts_with(OWN) {
        return shown;
    }
    let what = match e.classify() {
        serde_json::error::Category::Syntax => "not JSON",
        serde_json::error::Category::Eof => "cut short",
        serde_json::error::Category::Data => "a value of the wrong type or shape",
        serde_json::error::Category::Io => "unreadable",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

/// The (version, writer) most fields share, if at least two do.
fn common_pair(fields: &Fields) -> Option<(u64, &str)> {
    // A row has a handful of distinct pairs at most: a linear tally beats a map.
    let mut tally: Vec<((u64, &str), usize)> = Vec::with_capacity(4);
    for (_, f) in fields.iter() {
        let pair = (f.1, f.2.as_str());
        match tally.iter_mut().find(|(p, _)| *p == pair) {
            Some((_, n)) => *n += 1,
            None => tally.push((pair, 1)),
        }
    }
    tally.into_iter().filter(|(_, n)| *n >= 2).max_by_key(|(_, n)| *n).map(|(p, _)| p)
}

struct Stored<'a> {
    fields: &'a Fields,
    common: Option<(u64, &'a str)>,
}

impl Serialize for Stored<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.fields.len() + usize::from(self.common.is_some())))?;
        if let Some(pair) = &self.common {
            map.serialize_entry(COMMON, pair)?;
        }
        for (name, f) in self.fields.iter() {
            if !name.is_empty() && self.common == Some((f.1, f.2.as_str())) {
                map.serialize_entry(name.as_str(), f.0.as_str())?;
            } else {
                map.serialize_entry(name.as_str(), f)?;
            }
        }
        map.end()
    }
}

/// One value of the stored object.
enum Entry {
    /// A field with the row's common version and writer.
    Bare(Text),
    /// A field with its own.
    Full(FieldState),
    /// The common version and writer.
    Common(u64, Text),
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an object of stored fields")
    }

    fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Fields, M::Error> {
        // serde_json gives no size hint: room for a member's dozen fields, a household's grow once.
        let mut out = Fields::with_capacity(map.size_hint().unwrap_or(16));
        let mut common: Option<(u64, Text)> = None;
        while let Some(name) = map.next_key::<Text>()? {
            let state = match map.next_value::<Entry>()? {
                Entry::Common(version, writer) if name.is_empty() => {
                    common = Some((version, writer));
                    continue;
                }
                Entry::Common(..) => {
                    return Err(de::Error::custom(format!("{OWN}field {name}: a version and writer without a value")));
                }
                Entry::Full(state) => state,
                Entry::Bare(value) => match &common {
                    Some((version, writer)) => FieldState(value, *version, writer.clone()),
                    None => {
                        return Err(de::Error::custom(format!(
                            "{OWN}field {name}: a bare value before the row's common version and writer"
                        )));
                    }
                },
            };
            // Stored rows come in name order, so this appends; a later duplicate wins.
            if let Some((name, state)) = out.try_append(name, state) {
                out.insert(name, state);
            }
        }
        Ok(out)
    }
}

impl<'de> Deserialize<'de> for Entry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Entry, D::Error> {
        d.deserialize_any(EntryVisitor)
    }
}

struct EntryVisitor;

impl<'de> Visitor<'de> for EntryVisitor {
    type Value = Entry;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a value, [value, version, writer] or [version, writer]")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Entry, E> {
        Ok(Entry::Bare(Text::from(v)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Entry, A::Error> {
        let missing = || de::Error::custom(format!("{OWN}a stored field's array is too short"));
        match seq.next_element::<Head>()?.ok_or_else(missing)? {
            Head::Value(value) => {
                let version = seq.next_element::<u64>()?.ok_or_else(missing)?;
                let writer = seq.next_element::<Text>()?.ok_or_else(missing)?;
                end(seq)?;
                Ok(Entry::Full(FieldState(value, version, writer)))
            }
            Head::Version(version) => {
                let writer = seq.next_element::<Text>()?.ok_or_else(missing)?;
                end(seq)?;
                Ok(Entry::Common(version, writer))
            }
        }
    }
}

fn end<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    match seq.next_element::<de::IgnoredAny>()? {
        None => Ok(()),
        Some(_) => Err(de::Error::custom(format!("{OWN}a stored field's array is too long"))),
    }
}

/// The first element of an array: a field's value, or the common pair's version.
enum Head {
    Value(Text),
    Version(u64),
}

impl<'de> Deserialize<'de> for Head {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Head, D::Error> {
        struct HeadVisitor;
        impl<'de> Visitor<'de> for HeadVisitor {
            type Value = Head;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a value or a version")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Head, E> {
                Ok(Head::Value(Text::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Head, E> {
                Ok(Head::Version(v))
            }
        }
        d.deserialize_any(HeadVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn fields_of(entries: Vec<(String, (String, u64, String))>) -> Fields {
        entries
            .into_iter()
            .map(|(name, (value, version, writer))| {
                (Text::from(name), FieldState(value.into(), version, writer.into()))
            })
            .collect()
    }

    #[test]
    fn shared_pair_is_written_once() {
        let f = fields_of(vec![
            ("name".into(), ("张三".into(), 7, "420322105".into())),
            ("phone".into(), ("1".into(), 7, "420322105".into())),
            ("status".into(), ("CountyAnnounced".into(), 9, "420322".into())),
        ]);
        let text = to_json(&f);
        assert_eq!(text, r#"{"":[7,"420322105"],"name":"张三","phone":"1","status":["CountyAnnounced",9,"420322"]}"#);
        assert_eq!(parse(&text).unwrap(), f);
    }

    #[test]
    fn malformed_text_is_an_error_not_a_guess() {
        for bad in [
            r#"{"name":"张三"}"#,               // bare value, no pair
            r#"{"name":[7,"420322"]}"#,         // a pair under a field's name
            r#"{"":[7,"420322"],"a":["v",1]}"#, // too short
            r#"{"":[7,"420322",1]}"#,           // too long
            r#"{"a":["v",1,"w"]} trailing"#,
            r#"{"a":1}"#,
            "[]",
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn errors_say_where_and_never_quote_a_value() {
        let e = parse(r#"{"":[7,"420322"],"phone":["13800001234","13800001234","w"]}"#).unwrap_err();
        assert!(!e.contains("1380000"), "{e}");
        assert!(e.contains("wrong type") && e.contains("column"), "{e}");
        let e = parse(r#"{"phone":"13800001234"}"#).unwrap_err();
        assert!(e.contains("field phone") && !e.contains("1380000"), "{e}");
        let e = parse(r#"{"":[7,"420322"],"a":["v",1]}"#).unwrap_err();
        assert!(e.contains("too short") && e.contains("column"), "{e}");
    }

    proptest! {
        /// Whatever the fields (names, values with quotes, controls and CJK, any versions and
        /// writers), the stored text reads back to the same fields.
        #[test]
        fn stored_text_round_trips(
            entries in proptest::collection::vec(
                ("\\PC{0,12}|[\"\\\\\u{0}-\u{1f}\u{7f}a-z]{0,8}", ("\\PC{0,16}|[\"\\\\\u{0}-\u{1f}é中]{0,8}", 0u64..4, "[0-9]{2,3}")),
                0..20,
            )
        ) {
            let fields = fields_of(entries);
            let text = to_json(&fields);
            prop_assert_eq!(parse(&text).unwrap(), fields);
        }

        /// Text in the form written before the pair was hoisted (every field an array, what serde
        /// writes for the field map) reads the same.
        #[test]
        fn earlier_form_still_reads(
            entries in proptest::collection::btree_map(
                "[a-z_.]{1,12}",
                ("\\PC{0,16}|[\"\\\\\u{0}-\u{1f}é中]{0,8}", any::<u64>(), "[0-9]{2,12}"),
                0..20,
            )
        ) {
            let fields = fields_of(entries.into_iter().collect());
            let as_object: BTreeMap<&str, &FieldState> = fields.iter().map(|(n, f)| (n.as_str(), f)).collect();
            let earlier = serde_json::to_string(&as_object).unwrap();
            prop_assert_eq!(parse(&earlier).unwrap(), fields);
        }

        /// The stored text is never longer than the earlier form of the same fields.
        #[test]
        fn never_longer_than_the_earlier_form(
            entries in proptest::collection::btree_map(
                "[a-z_.]{1,12}", ("\\PC{0,16}", 0u64..3, "[0-9]{6,9}"), 0..20,
            )
        ) {
            let fields = fields_of(entries.into_iter().collect());
            let as_object: BTreeMap<&str, &FieldState> = fields.iter().map(|(n, f)| (n.as_str(), f)).collect();
            prop_assert!(to_json(&fields).len() <= serde_json::to_string(&as_object).unwrap().len());
        }
    }
}
