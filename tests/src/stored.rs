//! Reading a hub's `records.fields` straight from its database, as an auditor with `sqlite3`
//! would: a JSON object whose `""` entry is the row's common `[version, writer]`, each field
//! either a bare value (that pair) or `[value, version, writer]`.

use serde_json::Value;

/// The value of field `name` in stored fields text parsed as JSON.
pub fn stored_value<'a>(fields: &'a Value, name: &str) -> Option<&'a str> {
    let f = fields.get(name)?;
    f.as_str().or_else(|| f.get(0)?.as_str())
}

/// Every field's value by name, without the common pair.
pub fn stored_values(fields: &Value) -> Vec<(String, String)> {
    let Some(map) = fields.as_object() else { return vec![] };
    map.keys()
        .filter(|name| !name.is_empty())
        .filter_map(|name| Some((name.clone(), stored_value(fields, name)?.to_string())))
        .collect()
}
