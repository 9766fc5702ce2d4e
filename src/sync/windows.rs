//! A first sync of a big tree from one peer to peers that hold nothing under the root, carried
//! out in windows: each window is fetched, decided, copied and recorded before the next, so the
//! client never holds the whole tree.

use std::collections::HashSet;

use super::root::{root_is_dir, RootRun};
use crate::paths::WirePath;
use crate::peer::OpError;
use crate::plan::{Listing, Paths, PeerId, Plan, Problem};
use crate::report::{Event, Reporter, RootDoc};
use crate::transfer::WireStats;

/// Entries a window holds at most when a first sync is carried out in windows: a window costs
/// the client a few kilobytes an entry while it is decided and carried out (the plan, what each
/// target needs, the records for every peer, what is told), so this bounds its memory.
pub(super) const WINDOW: usize = 10_000;

impl RootRun<'_> {
    /// The peer whose entries settling left to be fetched window by window, and those entries.
    pub(super) fn deferred(&self, views: &[Option<&Listing>]) -> Option<(PeerId, &Paths)> {
        self.scans.iter().enumerate().find_map(|(p, scan)| {
            let scanned = scan.as_ref()?[self.index].as_ref().ok()?;
            (views[p].is_some() && !scanned.deferred.is_empty()).then_some((p, &scanned.deferred))
        })
    }

    /// A first sync from one peer to peers that hold nothing under the root, in windows of
    /// [`WINDOW`] entries: each is fetched, decided, copied and recorded before the next, so
    /// the client never holds the whole tree. No entry's decision depends on another's here
    /// (one holder: no deletions, conflicts or clones), so the windows decide as one would.
    pub(super) async fn sync_in_windows(
        &self,
        holder: PeerId,
        deferred: &Paths,
        views: &[Option<&Listing>],
        abs: &[Option<WirePath>],
        started: std::time::Instant,
        rep: &Reporter,
    ) -> HashSet<PeerId> {
        let nothing = Listing::new();
        let mut taking: Vec<PeerId> = (0..views.len()).filter(|p| views[*p].is_some()).collect();
        let mut lost = HashSet::new();
        let mut is_dir_once = None;
        let mut wire = WireStats::default();
        let mut doc: Option<RootDoc> = None;
        let names = self.names();
        for n in 0..deferred.len().div_ceil(WINDOW) {
            let window = deferred.slice(n * WINDOW, (n + 1) * WINDOW);
            let t0 = std::time::Instant::now();
            // The root itself, always sent in full, is decided with the first window.
            let mut listing = match views[holder] {
                Some(l) if n == 0 => l.clone(),
                _ => Listing::new(),
            };
            let fetched = self.peers[holder]
                .conn
                .lock()
                .await
                .detail(self.index as u32, window, &mut listing)
                .await;
            match fetched {
                Ok(()) => {}
                Err(OpError::Failed(m) | OpError::Changed(m)) => {
                    // Still in step: only this root is left out there, and its state stays.
                    rep.emit(Event::WhileComparing {
                        peer: Some(self.name(holder).to_string()),
                        error: m,
                    });
                    taking.retain(|p| *p != holder);
                    break;
                }
                Err(OpError::Lost(e)) => {
                    rep.emit(Event::WhileComparing {
                        peer: None,
                        error: format!("{e:#}"),
                    });
                    lost.insert(holder);
                    break;
                }
            }
            let views: Vec<Option<&Listing>> = (0..views.len())
                .map(|p| match views[p] {
                    _ if lost.contains(&p) => None,
                    None => None,
                    Some(_) if p == holder => Some(&listing),
                    Some(l) if n == 0 => Some(l),
                    Some(_) => Some(&nothing),
                })
                .collect();
            let is_dir = *is_dir_once.get_or_insert_with(|| root_is_dir(&views));
            // The holder's entries of later windows count as held (the empty-group guard
            // tells them all at once).
            let mut later = vec![0; views.len()];
            later[holder] = deferred.len().saturating_sub((n + 1) * WINDOW);
            let t1 = std::time::Instant::now();
            let plan = self.decide(&views, &later, is_dir);
            let t2 = std::time::Instant::now();
            let left_out = plan.problems.iter().any(
                |p| matches!(p, Problem::EmptyGroup { peer, .. } | Problem::EmptyRoot { peer, .. } if *peer == holder),
            );
            let (gone, stats, _) = self.carry_out(&plan, &views, abs, is_dir, &[], rep).await;
            lost.extend(gone);
            wire.add(stats);
            let t3 = std::time::Instant::now();
            if !self.cli.dry_run {
                let live: Vec<PeerId> = taking
                    .iter()
                    .copied()
                    .filter(|p| !lost.contains(p))
                    .collect();
                let broke = self.apply().records(&plan, &live, rep).await;
                lost.extend(broke);
            }
            tracing::debug!(
                window = n,
                fetched = ?t1 - t0,
                decided = ?t2 - t1,
                carried_out = ?t3 - t2,
                recorded = ?t3.elapsed(),
                "window done"
            );
            if rep.json() {
                let window = RootDoc::of(&self.told(&plan, &views, &names, abs, is_dir));
                match &mut doc {
                    Some(d) => d.merge(window),
                    None => doc = Some(window),
                }
            }
            if left_out {
                // Its state stays as it was, as for any peer left out of a root.
                taking.retain(|p| *p != holder);
            }
            if lost.contains(&holder) || left_out {
                break;
            }
        }
        if !self.cli.dry_run {
            let live: Vec<PeerId> = taking.into_iter().filter(|p| !lost.contains(p)).collect();
            self.apply().commit(&Plan::default(), &live, rep).await;
        }
        if rep.json() {
            // A root whose first window failed is still in the document, with nothing done.
            let doc = doc.unwrap_or_else(|| RootDoc::empty(&self.root.display));
            let seconds = started.elapsed().as_secs_f64();
            rep.add_json_root(doc, wire.literal, wire.matched, seconds);
        }
        lost
    }
}
