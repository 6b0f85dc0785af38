//! `KOLM_HOME/logs/tune.jsonl`: one JSON line per tune state change (tune.md §4), appended
//! with one write so that concurrent tuners never interleave within a line.

use crate::home::Home;
use crate::Result;

/// Appends `{"time", "event", "slug", …fields}`.
pub fn append(
    home: &Home,
    event: &str,
    slug: &str,
    fields: serde_json::Map<String, serde_json::Value>,
) -> Result<()> {
    let mut line = serde_json::Map::new();
    line.insert("time".into(), crate::dates::now_rfc3339().into());
    line.insert("event".into(), event.into());
    line.insert("slug".into(), slug.into());
    line.extend(fields);
    let mut bytes = serde_json::to_vec(&serde_json::Value::Object(line)).expect("serialises");
    bytes.push(b'\n');
    let dir = home.logs();
    std::fs::create_dir_all(&dir).map_err(|e| crate::Error::io(&dir, "create", e))?;
    super::append_line(&dir.join("tune.jsonl"), &bytes)
}
