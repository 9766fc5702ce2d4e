//! The `--json` document (its schema is in synk(1), JSON OUTPUT): one per run, with a part
//! per root (what was decided for each entry and done on each peer, the problems, the bytes)
//! and the run's conflicts, errors and warnings as the lines that told them.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use super::text;
use super::RootPlan;
use crate::model::Kind;
use crate::paths::WirePath;
use crate::plan::Problem;

/// What `--json` collects during a run.
#[derive(Default)]
pub(super) struct JsonDoc {
    /// Each root's part, finished.
    pub(super) roots: Vec<Value>,
    /// The errors, as told.
    pub(super) errors: Vec<String>,
    /// The warnings, as told.
    pub(super) warnings: Vec<String>,
    /// The conflicts, as told.
    pub(super) conflicts: Vec<String>,
    /// The run's peers, each with its role.
    pub(super) peers: Vec<Value>,
    /// `--versions`: every kept version listed.
    pub(super) versions: Option<Vec<Value>>,
}

impl JsonDoc {
    /// The run's document: exit status, time, roots, messages.
    pub(super) fn document(self, exit: i32, seconds: f64, dry_run: bool) -> Value {
        let mut doc = json!({
            "synk": env!("CARGO_PKG_VERSION"),
            "exit": exit,
            "dry_run": dry_run,
            "seconds": seconds,
            "peers": self.peers,
            "roots": self.roots,
            "conflicts": self.conflicts,
            "errors": self.errors,
            "warnings": self.warnings,
        });
        if let Some(v) = self.versions {
            doc["versions"] = json!(v);
        }
        doc
    }
}

/// A kept version as `--versions --json` lists it: the same columns as the text, by name.
pub(super) fn version(peer: &str, k: &crate::model::Kept) -> Value {
    let mut v = json!({
        "peer": peer,
        "replaced": text::when(k.replaced),
        "kind": match &k.meta.kind {
            Kind::Dir => "dir",
            Kind::Symlink(_) => "symlink",
            Kind::Special => "special",
            _ => "file",
        },
        "size": k.meta.size,
        "digest": k.meta.digest.as_ref().map(crate::model::Digest::hex),
        "why": text::why_word(k.why),
        "id": k.id,
    });
    put_path(&mut v, "path", &k.path);
    if let Kind::Symlink(t) = &k.meta.kind {
        put_path(&mut v, "target", t);
    }
    v
}

/// Puts path `p` into object `v` as `key`: the path as text, lossily where it is not UTF-8
/// (JSON strings are), and then also as `KEY_hex`, its exact bytes in lowercase hex, so a
/// reader can still name the file (synk(1), JSON OUTPUT).
fn put_path(v: &mut Value, key: &str, p: &WirePath) {
    let bytes = p.as_bytes();
    v[key] = json!(String::from_utf8_lossy(bytes));
    if std::str::from_utf8(bytes).is_err() {
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        v[format!("{key}_hex")] = json!(hex);
    }
}

/// The document as text, one line: JSON as `serde_json` writes it (control characters below
/// U+0020 escaped), with DEL and the C1 controls (U+0080 to U+009F, which a terminal may take
/// for escape sequences too) escaped as well: the text holds no control character at all.
pub(super) fn to_text(doc: &Value) -> String {
    let text = doc.to_string();
    if !text
        .chars()
        .any(|c| c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c))
    {
        return text;
    }
    // They can only be inside strings: everything else serde_json writes is ASCII.
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c == '\u{7f}' || ('\u{80}'..='\u{9f}').contains(&c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// One root's part of the document, as it grows: the entries and problems of its plan (or of
/// each window of a first sync carried out in windows) and the bytes its copies carry.
#[derive(Debug, Clone)]
pub struct RootDoc(Value);

impl RootDoc {
    /// The part of a root for which nothing was decided.
    pub fn empty(root: &str) -> RootDoc {
        RootDoc(json!({
            "root": root,
            "entries": [],
            "problems": [],
            "bytes": 0,
        }))
    }

    /// The part of a root's plan.
    pub fn of(p: &RootPlan<'_>) -> RootDoc {
        let name = |peer: usize| p.names[peer].as_str();
        let plan = p.plan;
        let mut entries: BTreeMap<WirePath, Value> = BTreeMap::new();
        let entry = |entries: &mut BTreeMap<WirePath, Value>, rel: &WirePath, decision: &str| {
            entries
                .entry(rel.clone())
                .or_insert_with(|| {
                    let mut e = json!({"decision": decision, "actions": []});
                    put_path(&mut e, "path", rel);
                    e
                })
                .clone()
        };
        for c in &plan.copies {
            let mut e = entry(&mut entries, &c.rel, "copy");
            e["winner"] = json!(name(c.master));
            entries.insert(c.rel.clone(), e);
        }
        for r in &plan.removes {
            let decision = if r.deleted { "delete" } else { "replace" };
            let e = entry(&mut entries, &r.rel, decision);
            entries.insert(r.rel.clone(), e);
        }
        for c in &plan.conflicts {
            let mut e = entry(&mut entries, &c.rel, "conflict");
            e["decision"] = json!("conflict");
            e["winner"] = json!(name(c.winner));
            e["kept"] = c
                .kept
                .iter()
                .map(|(peer, to)| {
                    let mut k = json!({"peer": name(*peer)});
                    put_path(&mut k, "as", to);
                    k
                })
                .collect();
            entries.insert(c.rel.clone(), e);
        }
        for o in &plan.overrides {
            let mut e = entry(&mut entries, &o.rel, "copy");
            let one = json!({"peer": name(o.peer), "by": name(o.by)});
            match e["overridden"].as_array_mut() {
                Some(list) => list.push(one),
                None => e["overridden"] = json!([one]),
            }
            entries.insert(o.rel.clone(), e);
        }
        for t in &plan.touches {
            let mut e = entry(&mut entries, &t.rel, "metadata");
            let fields: Vec<Value> = text::touched_fields(t)
                .into_iter()
                .map(|(f, was, now)| json!({"peer": name(t.peer), "field": f, "was": was, "now": now}))
                .collect();
            match e["metadata"].as_array_mut() {
                Some(list) => list.extend(fields),
                None => e["metadata"] = json!(fields),
            }
            entries.insert(t.rel.clone(), e);
        }
        for a in plan.actions() {
            let mut e = entry(&mut entries, &a.rel, "copy");
            if let Some(list) = e["actions"].as_array_mut() {
                list.push(json!({
                    "peer": name(a.peer),
                    "action": text::action_word(&a, p.views),
                    "from": a.from.map(name),
                }));
            }
            entries.insert(a.rel, e);
        }
        let problems: Vec<Value> = plan
            .problems
            .iter()
            .map(|problem| {
                let (mut v, rel) = match problem {
                    Problem::Unreadable { rel, peer, error } => (json!({"problem": "unreadable", "peer": name(*peer), "error": error}), Some(rel)),
                    Problem::Special { rel, peers } => (json!({"problem": "special", "peers": peers.iter().map(|p| name(*p)).collect::<Vec<_>>()}), Some(rel)),
                    Problem::EmptyRoot { peer, held } => (json!({"problem": "empty-root", "peer": name(*peer), "held": held}), None),
                    Problem::EmptySubtree { peer, rel, held, path } => {
                        let mut v = json!({"problem": "empty-subtree", "peer": name(*peer), "held": held});
                        put_path(&mut v, "peer_path", path);
                        (v, Some(rel))
                    }
                    Problem::TooBig { rel, size } => (json!({"problem": "too-big", "size": size}), Some(rel)),
                    Problem::Missing => (json!({"problem": "missing"}), None),
                    Problem::NoSymlinks { peer, rels } => {
                        let names: Vec<String> = rels
                            .iter()
                            .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
                            .collect();
                        (json!({"problem": "no-symlinks", "peer": name(*peer), "names": names}), None)
                    }
                    Problem::Collision { peer, names } => {
                        let names: Vec<String> = names
                            .iter()
                            .map(|n| String::from_utf8_lossy(n.as_bytes()).into_owned())
                            .collect();
                        (json!({"problem": "name-collision", "peer": name(*peer), "names": names}), None)
                    }
                    Problem::EmptyGroup { peer, held } => (json!({"problem": "empty-group", "peer": name(*peer), "held": held}), None),
                };
                if let Some(rel) = rel {
                    put_path(&mut v, "path", rel);
                }
                v
            })
            .collect();
        // Sizes come from peers: no overflow, however big they say a file is.
        let bytes = plan
            .copies
            .iter()
            .filter(|c| c.meta.kind == Kind::File)
            .map(|c| c.meta.size.saturating_mul(c.targets.len() as u64))
            .fold(0u64, u64::saturating_add);
        RootDoc(json!({
            "root": p.root,
            "entries": entries.into_values().collect::<Vec<_>>(),
            "problems": problems,
            "bytes": bytes,
        }))
    }

    /// Adds a later window's part: entries and problems appended, bytes added up.
    pub fn merge(&mut self, window: RootDoc) {
        let (d, window) = (&mut self.0, window.0);
        for key in ["entries", "problems"] {
            if let (Some(all), Some(more)) = (d[key].as_array_mut(), window[key].as_array()) {
                all.extend(more.iter().cloned());
            }
        }
        d["bytes"] =
            json!(d["bytes"].as_u64().unwrap_or(0) + window["bytes"].as_u64().unwrap_or(0));
    }

    /// The finished part: with what crossed the wire (`literal` bytes sent as they are,
    /// `matched` found on targets already) and how long the root took.
    pub(super) fn finish(mut self, literal: u64, matched: u64, seconds: f64) -> Value {
        self.0["literal_bytes"] = json!(literal);
        self.0["matched_bytes"] = json!(matched);
        self.0["seconds"] = json!(seconds);
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_that_is_not_utf8_goes_as_text_and_as_its_exact_bytes() {
        let mut v = json!({});
        put_path(&mut v, "path", &WirePath(b"d/caf\xe9\x1b[2J\n".to_vec()));
        assert_eq!(v["path"], json!("d/caf\u{fffd}\u{1b}[2J\n"));
        assert_eq!(v["path_hex"], json!("642f636166e91b5b324a0a"));
        let text = serde_json::to_string(&v).unwrap();
        assert!(!text.contains('\x1b') && !text.contains('\n'), "{text}");
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        // No control character is left in the text, C1 and DEL included.
        let mut v = json!({});
        put_path(
            &mut v,
            "path",
            &WirePath("a\u{9b}b\x7fc\x1b".as_bytes().to_vec()),
        );
        let text = to_text(&v);
        assert_eq!(text, r#"{"path":"a\u009bb\u007fc\u001b"}"#);
        assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), v);
        // A UTF-8 path goes as it is, without hex.
        let mut v = json!({});
        put_path(&mut v, "as", &WirePath::from("caf\u{e9}"));
        assert_eq!(v, json!({"as": "caf\u{e9}"}));
    }
}
