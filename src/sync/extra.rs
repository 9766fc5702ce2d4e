//! After the copies: targets are given the owners, extended attributes and ACLs they lack,
//! the values fetched from a peer that holds them ([`crate::plan::extra`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use futures::future::join_all;

use super::root::RootRun;
use crate::extra::xattr::{class_of, Class, Xattr};
use crate::paths::WirePath;
use crate::peer::OpError;
use crate::plan::extra::{needs, Need};
use crate::plan::{Listing, PeerId, Plan};
use crate::proto::Request;
use crate::report::{Event, Reporter};

impl RootRun<'_> {
    /// What targets of `plan` need after the copies ([`needs`]) that they can be given: an
    /// owner only where the serve runs as root (it sets none otherwise).
    pub(super) fn extra_needs(&self, plan: &Plan, views: &[Option<&Listing>]) -> Vec<Need> {
        let mut out = needs(plan, views);
        for n in &mut out {
            if !self.holds(views, n.peer).is_some_and(|h| h.as_root) {
                n.owner = None;
            }
        }
        out.retain(|n| n.xattrs.is_some() || n.acl.is_some() || n.owner.is_some());
        out
    }

    /// Gives every target of `plan` what it needs beyond content, mode and mtime (none where
    /// `skip` says its step failed or it is gone). Returns the peers whose connection broke.
    pub(super) async fn give_extra(
        &self,
        plan: &Plan,
        views: &[Option<&Listing>],
        skip: &dyn Fn(PeerId, &WirePath) -> bool,
        rep: &Reporter,
    ) -> HashSet<PeerId> {
        let needs: Vec<Need> = self
            .extra_needs(plan, views)
            .into_iter()
            .filter(|n| !skip(n.peer, &n.rel))
            .collect();
        let lost = Mutex::new(HashSet::new());
        if needs.is_empty() {
            return HashSet::new();
        }
        // The values, from each peer that holds them.
        let mut from: BTreeMap<PeerId, Vec<WirePath>> = BTreeMap::new();
        for n in &needs {
            for (p, r) in [&n.xattrs, &n.acl].into_iter().flatten().flatten() {
                from.entry(*p).or_default().push(r.clone());
            }
        }
        let all = [Class::User, Class::Sys, Class::Acl];
        let root = self.index as u32;
        let fetched = join_all(from.into_iter().map(|(p, mut rels)| {
            let lost = &lost;
            async move {
                rels.sort();
                rels.dedup();
                let peer = &self.peers[p];
                let mut conn = peer.conn.lock().await;
                match conn.attrs(root, &rels, &all).await {
                    Ok((got, unread)) => {
                        if unread > 0 {
                            // Not synced: a failure, each entry named in the serve's warnings.
                            rep.emit(Event::PeerFailed {
                                peer: peer.name.clone(),
                                error: format!(
                                    "the attributes of {unread} entries could not be read there; left for the next run"
                                ),
                            });
                        }
                        got.into_iter().map(|(r, l)| ((p, r), l)).collect()
                    }
                    Err(e) => {
                        fail(rep, &peer.name, e, || {
                            lost.lock().expect("lost set lock").insert(p);
                        });
                        Vec::new()
                    }
                }
            }
        }))
        .await;
        let values: HashMap<(PeerId, WirePath), Vec<Xattr>> =
            fetched.into_iter().flatten().collect();
        let pick = |at: &Option<Option<(PeerId, WirePath)>>, classes: &[Class]| match at {
            None => Some(None),
            Some(None) => Some(Some(Vec::new())),
            Some(Some(k)) => values.get(k).map(|l| {
                Some(
                    l.iter()
                        .filter(|x| class_of(&x.name).is_some_and(|c| classes.contains(&c)))
                        .cloned()
                        .collect(),
                )
            }),
        };
        // A target reads trusted.* and security.* only as root, which it tells with what its
        // filesystem holds (its root entry may not be there yet): their values are never
        // sent to one that is not.
        let as_root = |p: PeerId| self.holds(views, p).is_some_and(|h| h.as_root);
        let mut steps: BTreeMap<PeerId, Vec<Request>> = BTreeMap::new();
        for n in &needs {
            let root_there = n.sys && as_root(n.peer);
            let classes: &[Class] = if root_there {
                &[Class::User, Class::Sys]
            } else {
                &[Class::User]
            };
            // Values a source could not give are left for the next run.
            let (Some(xattrs), Some(acl)) = (pick(&n.xattrs, classes), pick(&n.acl, &[Class::Acl]))
            else {
                continue;
            };
            steps.entry(n.peer).or_default().push(Request::SetExtra {
                root,
                rel: n.rel.clone(),
                xattrs,
                sys: root_there,
                acl,
                owner: n.owner.clone(),
            });
        }
        join_all(steps.into_iter().map(|(p, reqs)| {
            let lost = &lost;
            async move {
                let peer = &self.peers[p];
                let mut conn = peer.conn.lock().await;
                match conn.pipeline(reqs.iter()).await {
                    Ok(answers) => {
                        for e in answers.into_iter().filter_map(Result::err) {
                            fail(rep, &peer.name, e, || {});
                        }
                    }
                    Err(e) => fail(rep, &peer.name, OpError::Lost(e), || {
                        lost.lock().expect("lost set lock").insert(p);
                    }),
                }
            }
        }))
        .await;
        lost.into_inner().expect("lost set lock")
    }
}

/// Tells a failure on peer `name`; `gone` runs where the connection broke.
fn fail(rep: &Reporter, name: &str, e: OpError, gone: impl FnOnce()) {
    rep.emit(match e {
        OpError::Changed(error) => Event::ChangedMeanwhile {
            peer: name.to_string(),
            error,
        },
        OpError::Lost(e) => {
            gone();
            // The error names the peer already.
            Event::Failed {
                error: format!("{e:#}"),
            }
        }
        other => Event::PeerFailed {
            peer: name.to_string(),
            error: other.to_string(),
        },
    });
}
