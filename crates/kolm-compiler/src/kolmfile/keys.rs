//! Every key and table a Kolmfile may hold, as a tree: what kolm recognises.
//!
//! An error must never show a value kolm does not recognise (it may be a pasted credential,
//! kolmfile.md §5.2), and it must name the table a stray key sits in. Both need the tree of
//! known keys while the file is still refused, before the serde types have read anything. The
//! tree comes from those types' own declarations (`table!` in [`super::raw`]); a test checks it
//! against what serde accepts, table by table.

/// One key: a value kolm reads, or a table of further keys.
pub(super) enum Node {
    /// A value (for `output_schema` and `assert`, a free-form one kolm reads whole).
    Leaf,
    Table(Keys),
}

/// A table's keys, in the order its struct declares them.
pub(super) type Keys = &'static [(&'static str, Node)];

/// What a field's type is in the tree: [`super::raw`]'s `table!` implements it for each table
/// it declares; every other type a field holds is a value.
pub(super) trait Key {
    const NODE: Node;
}

macro_rules! values {
    ($($t:ty),*) => { $(impl Key for $t { const NODE: Node = Node::Leaf; })* };
}
values!(
    String,
    bool,
    i64,
    u64,
    f64,
    Vec<String>,
    serde_json::Value,
    Vec<serde_json::Value>
);

impl<T: Key> Key for Option<serde_spanned::Spanned<T>> {
    const NODE: Node = T::NODE;
}

impl<T: Key> Key for Vec<serde_spanned::Spanned<T>> {
    const NODE: Node = T::NODE;
}

/// The key `name` in a table's keys, if kolm knows it.
pub(super) fn child(table: Keys, name: &str) -> Option<&'static Node> {
    table.iter().find(|(k, _)| *k == name).map(|(_, n)| n)
}

/// A table path as a TOML header: `[teacher.price]`, `[[task]]`, `[task.base]`, and "the top
/// level" for the root.
pub(super) fn header(path: &[String]) -> String {
    match path {
        [] => "the top level".to_string(),
        [one] if one == "task" => "[[task]]".to_string(),
        _ => format!("[{}]", path.join(".")),
    }
}
