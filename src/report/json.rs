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
}

impl JsonDoc {
    /// The run's document: exit status, time, roots, messages.
    pub(super) fn document(self, exit: i32, seconds: f64, dry_run: bool) -> Value {
        json!({
            "synk": env!("CARGO_PKG_VERSION"),
            "exit": exit,
            "dry_run": dry_run,
            "seconds": seconds,
            "peers": self.peers,
            "roots": self.roots,
            "conflicts": self.conflicts,
            "errors": self.errors,
            "warnings": self.warnings,
        })
    }
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
                .or_insert_with(
                    || json!({"path": rel.to_string(), "decision": decision, "actions": []}),
                )
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
                .map(|(peer, to)| json!({"peer": name(*peer), "as": to.to_string()}))
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
            .map(|problem| match problem {
                Problem::Unreadable { rel, peer, error } => json!({"problem": "unreadable", "path": rel.to_string(), "peer": name(*peer), "error": error}),
                Problem::Special { rel, peers } => json!({"problem": "special", "path": rel.to_string(), "peers": peers.iter().map(|p| name(*p)).collect::<Vec<_>>()}),
                Problem::EmptyRoot { peer, held } => json!({"problem": "empty-root", "peer": name(*peer), "held": held}),
                Problem::EmptySubtree { peer, rel, held, path } => json!({"problem": "empty-subtree", "path": rel.to_string(), "peer": name(*peer), "peer_path": path.to_string(), "held": held}),
                Problem::TooBig { rel, size } => json!({"problem": "too-big", "path": rel.to_string(), "size": size}),
                Problem::Missing => json!({"problem": "missing"}),
                Problem::EmptyGroup { peer, held } => json!({"problem": "empty-group", "peer": name(*peer), "held": held}),
            })
            .collect();
        let bytes: u64 = plan
            .copies
            .iter()
            .filter(|c| c.meta.kind == Kind::File)
            .map(|c| c.meta.size * c.targets.len() as u64)
            .sum();
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
