//! Between scan and decision: what peers sent in brief is settled, and what is not in sync
//! everywhere is fetched in full ([`plan::settle`]).

use futures::future::join_all;

use crate::peer::{OpError, Peer, RootScan};
use crate::plan;
use crate::report::Reporter;

/// Settles what every peer sent in brief for root `root` ([`plan::settle`]) and fetches the
/// rest in full, so the decision sees every entry that is not in sync everywhere. A peer
/// whose answer fails is left out of the root; one whose connection broke, out of the run.
pub(super) async fn settle_root(
    peers: &[Peer],
    scans: &mut [Option<Vec<RootScan>>],
    root: usize,
    max_size: Option<u64>,
    rep: &Reporter,
) {
    let settled = {
        let briefs: Vec<Option<&plan::Briefs>> = scans
            .iter()
            .map(|s| match s.as_ref().map(|s| &s[root]) {
                Some(Ok(scanned)) => Some(&scanned.briefs),
                _ => None,
            })
            .collect();
        if briefs.iter().flatten().all(|b| b.is_empty()) {
            return;
        }
        plan::settle(&briefs, max_size)
    };
    let fetched = join_all(
        settled
            .want
            .into_iter()
            .enumerate()
            .filter(|(_, want)| !want.is_empty())
            .map(|(p, want)| async move {
                let mut listing = plan::Listing::new();
                let r = peers[p]
                    .conn
                    .lock()
                    .await
                    .detail(root as u32, want, &mut listing)
                    .await;
                (p, r.map(|()| listing))
            }),
    )
    .await;
    for (p, scan) in scans.iter_mut().enumerate() {
        if let Some(Ok(scanned)) = scan.as_mut().map(|s| &mut s[root]) {
            scanned.briefs = plan::Briefs::default();
            scanned.settled = settled.held[p];
        }
    }
    for (p, r) in fetched {
        match r {
            Ok(full) => {
                if let Some(Ok(scanned)) = scans[p].as_mut().map(|s| &mut s[root]) {
                    scanned.listing.extend(full);
                }
            }
            // Still in step: only this root is left out there (reported with it).
            Err(OpError::Failed(m)) => {
                if let Some(s) = scans[p].as_mut() {
                    s[root] = Err(format!("{m} (while comparing listings)"));
                }
            }
            // The conversation broke: the peer is left out of the run.
            Err(OpError::Lost(e)) => {
                rep.error(format!("{e:#} (while comparing listings)"));
                scans[p] = None;
            }
        }
    }
}
