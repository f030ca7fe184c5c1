//! Who may write a checkpoint area: job identity and owner epochs.
//!
//! A store holds the checkpoints of many jobs, each under its own folder
//! [`job_prefix`]. Within a job, an *area* is what one writer at a time
//! checkpoints: the whole job in file mode, one input partition in Kafka
//! mode (`jobs/<job>/<topic>/p<N>/`).
//!
//! ## Epochs
//! A writer takes the area before it restores or writes anything: it
//! creates `owner/<epoch>.json` for the epoch after the highest one present,
//! with a create-if-absent write that can lose (then it tries the next one).
//! The record names the *seal*: the highest checkpoint id in the area when
//! the epoch was taken. Checkpoint ids carry their epoch
//! ([`checkpoint_id`]), so two owners never write the same id, and a newer
//! epoch's ids sort after every older one.
//!
//! An owner of epoch `e` is superseded once `owner/<e + 1>.json` exists
//! ([`superseded`]: one read, no listing). It checks that before it writes a
//! manifest and before it prunes, and stops writing when it finds it.
//! A check and the write after it are not atomic, so a manifest of epoch
//! `e` can still land after epoch `e + 1` was taken; [`eligibility`] keeps
//! such a manifest out of every restore: a checkpoint of epoch `e` counts
//! only if its id is at most the seal of every later epoch, that is, if it
//! was already there when each later owner took over. Epoch records are
//! never deleted (one small file per takeover): [`superseded`] and the
//! seals need them.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::snapshot::{SnapshotStore, list_checkpoints};
use crate::{Error, Result};

/// Checkpoint ids of epoch `e` are `e * EPOCH_STRIDE + n` for `n` from 1:
/// in decimal the epoch reads in front of the sequence number.
pub const EPOCH_STRIDE: u64 = 1_000_000_000;

/// The id of the `seq`-th checkpoint an owner of `epoch` writes.
pub fn checkpoint_id(epoch: u64, seq: u64) -> u64 {
    epoch * EPOCH_STRIDE + seq
}

/// The epoch a checkpoint id was written in (0: written before epochs).
pub fn epoch_of(id: u64) -> u64 {
    id / EPOCH_STRIDE
}

/// Longest job id.
pub const MAX_JOB_ID: usize = 128;

/// Checks that `id` can name a job's folder in a store: 1 to 128 ASCII
/// letters, digits, `.`, `_` or `-`, starting with a letter or digit.
pub fn validate_job_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= MAX_JOB_ID
        && id.as_bytes()[0].is_ascii_alphanumeric()
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(Error::Manifest(format!(
            "job id {id:?} cannot name checkpoints: use 1 to {MAX_JOB_ID} letters, digits, '.', '_' \
             or '-', starting with a letter or digit"
        )))
    }
}

/// The folder of job `job` in a store.
pub fn job_prefix(job: &str) -> String {
    format!("jobs/{job}")
}

/// One owner epoch of an area, as recorded in `owner/<epoch>.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Epoch {
    pub job_id: String,
    pub epoch: u64,
    /// The highest checkpoint id in the area when the epoch was taken.
    pub sealed: u64,
    /// Who took it (host and process), for people reading the store.
    pub owner: String,
    pub taken_at_ms: i64,
}

fn epoch_key(epoch: u64) -> String {
    format!("owner/{epoch:020}.json")
}

/// Epoch numbers present in the area, lowest first.
pub fn list_epochs(store: &dyn SnapshotStore) -> Result<Vec<u64>> {
    let mut epochs: Vec<u64> = store
        .list("owner/")?
        .iter()
        .filter_map(|k| {
            k.strip_prefix("owner/")?
                .strip_suffix(".json")?
                .parse()
                .ok()
        })
        .collect();
    epochs.sort_unstable();
    Ok(epochs)
}

/// Every epoch record of the area, lowest first.
pub fn load_epochs(store: &dyn SnapshotStore) -> Result<Vec<Epoch>> {
    list_epochs(store)?
        .into_iter()
        .map(|e| {
            let bytes = store
                .get_bytes(&epoch_key(e))?
                .ok_or_else(|| Error::Manifest(format!("owner epoch {e} vanished while read")))?;
            let epoch: Epoch = serde_json::from_slice(&bytes)
                .map_err(|err| Error::Manifest(format!("owner epoch {e} is unreadable: {err}")))?;
            if epoch.epoch != e {
                return Err(Error::Manifest(format!(
                    "owner epoch file {e} records epoch {}",
                    epoch.epoch
                )));
            }
            Ok(epoch)
        })
        .collect()
}

/// Takes the next epoch of the area for `job_id`. Losing a race to another
/// writer moves on to the epoch after theirs (the caller was given the area
/// last, so it is the rightful owner).
pub fn take(store: &dyn SnapshotStore, job_id: &str, owner: &str, now_ms: i64) -> Result<Epoch> {
    for _ in 0..16 {
        // Checkpoints first: a manifest listed here was written before the
        // epoch below exists, so it is sealed in.
        let sealed = list_checkpoints(store)?.last().copied().unwrap_or(0);
        // Above every epoch recorded and every epoch a checkpoint carries,
        // so no id is ever written twice even if owner records were lost.
        let next = list_epochs(store)?
            .last()
            .copied()
            .unwrap_or(0)
            .max(epoch_of(sealed))
            + 1;
        let epoch = Epoch {
            job_id: job_id.to_string(),
            epoch: next,
            sealed,
            owner: owner.to_string(),
            taken_at_ms: now_ms,
        };
        let bytes = serde_json::to_vec_pretty(&epoch).expect("an epoch always serializes");
        if store.put_if_absent(&epoch_key(next), &bytes)? {
            return Ok(epoch);
        }
    }
    Err(Error::Manifest(format!(
        "{}: gave up taking an owner epoch after 16 races with other writers",
        store.describe()
    )))
}

/// The epoch that superseded `epoch`, if one did.
pub fn superseded(store: &dyn SnapshotStore, epoch: u64) -> Result<Option<u64>> {
    Ok(store.size(&epoch_key(epoch + 1))?.map(|_| epoch + 1))
}

/// Errs with [`Error::Fenced`] when `epoch` was superseded.
pub fn check_owner(store: &dyn SnapshotStore, epoch: u64) -> Result<()> {
    match superseded(store, epoch)? {
        None => Ok(()),
        Some(by) => Err(Error::Fenced {
            area: store.describe(),
            epoch,
            by,
        }),
    }
}

/// Which checkpoints of an area a restore may take.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Eligibility {
    /// Ids that may be restored, oldest first.
    pub eligible: Vec<u64>,
    /// Ids written by an owner after it was superseded (or in an epoch that
    /// was never taken), with why.
    pub excluded: Vec<(u64, String)>,
}

/// Splits checkpoint `ids` (oldest first) by the area's `epochs`.
pub fn eligibility(ids: &[u64], epochs: &[Epoch]) -> Eligibility {
    let newest = epochs.iter().map(|e| e.epoch).max().unwrap_or(0);
    let mut out = Eligibility::default();
    for &id in ids {
        let e = epoch_of(id);
        let verdict = if e == 0 {
            // Written before epochs (format 1, moved here by an operator):
            // no owner wrote it after being superseded.
            None
        } else if e > newest {
            Some(format!("written in epoch {e}, which no owner took"))
        } else {
            epochs
                .iter()
                .filter(|later| later.epoch > e && id > later.sealed)
                .map(|later| {
                    format!(
                        "written by the owner of epoch {e} after epoch {} took over (sealed at {})",
                        later.epoch, later.sealed
                    )
                })
                .next()
        };
        match verdict {
            None => out.eligible.push(id),
            Some(why) => out.excluded.push((id, why)),
        }
    }
    out
}

/// How long pruning leaves an unreferenced object alone after it was
/// written, by default: longer than an upload takes from its first file to
/// its manifest.
pub const DEFAULT_PRUNE_GRACE: Duration = Duration::from_secs(600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::LocalDirStore;

    fn epoch(e: u64, sealed: u64) -> Epoch {
        Epoch {
            job_id: "j".into(),
            epoch: e,
            sealed,
            owner: "test".into(),
            taken_at_ms: 0,
        }
    }

    #[test]
    fn ids_carry_their_epoch() {
        assert_eq!(checkpoint_id(3, 17), 3_000_000_017);
        assert_eq!(epoch_of(3_000_000_017), 3);
        assert_eq!(epoch_of(17), 0, "ids from before epochs");
        assert!(checkpoint_id(4, 1) > checkpoint_id(3, EPOCH_STRIDE - 1));
    }

    #[test]
    fn job_ids_are_checked() {
        for ok in ["alerts", "cef-alerts.v2", "A_1", &"x".repeat(MAX_JOB_ID)] {
            validate_job_id(ok).expect(ok);
        }
        for bad in [
            "",
            "..",
            ".x",
            "a/b",
            "a b",
            "ä",
            &"x".repeat(MAX_JOB_ID + 1),
        ] {
            assert!(validate_job_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn late_manifests_of_a_superseded_owner_are_not_eligible() {
        let ids = [
            checkpoint_id(1, 1),
            checkpoint_id(1, 2),
            // Epoch 2 took over at (1, 2); (1, 3) landed afterwards.
            checkpoint_id(1, 3),
            checkpoint_id(2, 1),
            checkpoint_id(5, 1),
        ];
        let epochs = [
            epoch(1, 0),
            epoch(2, checkpoint_id(1, 2)),
            epoch(3, checkpoint_id(2, 1)),
        ];
        let e = eligibility(&ids, &epochs);
        assert_eq!(
            e.eligible,
            vec![
                checkpoint_id(1, 1),
                checkpoint_id(1, 2),
                checkpoint_id(2, 1)
            ]
        );
        let excluded: Vec<u64> = e.excluded.iter().map(|(id, _)| *id).collect();
        assert_eq!(excluded, vec![checkpoint_id(1, 3), checkpoint_id(5, 1)]);
        assert!(e.excluded[0].1.contains("after epoch 2 took over"), "{e:?}");
        // Checkpoints from before epochs always count: an operator may move
        // them into an area an epoch was already taken in.
        assert_eq!(eligibility(&[4, 5], &[epoch(1, 0)]).eligible, vec![4, 5]);
        assert_eq!(eligibility(&[4, 5], &[]).eligible, vec![4, 5]);
    }

    #[test]
    fn epochs_are_taken_in_turn_and_supersede_each_other() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = LocalDirStore::new(dir.path()).expect("store");
        let first = take(&store, "j", "a", 1).expect("take");
        assert_eq!((first.epoch, first.sealed), (1, 0));
        check_owner(&store, 1).expect("current");
        store
            .put_bytes(&crate::snapshot::manifest_key(checkpoint_id(1, 1)), b"{}")
            .expect("put");
        let second = take(&store, "j", "b", 2).expect("take");
        assert_eq!((second.epoch, second.sealed), (2, checkpoint_id(1, 1)));
        // Checkpoints of a later epoch without its record (moved here, or
        // the record lost) push the next epoch past them.
        let moved = tempfile::tempdir().expect("tempdir");
        let other = LocalDirStore::new(moved.path()).expect("store");
        other
            .put_bytes(&crate::snapshot::manifest_key(checkpoint_id(4, 2)), b"{}")
            .expect("put");
        assert_eq!(take(&other, "j", "c", 3).expect("take").epoch, 5);
        let err = check_owner(&store, 1).unwrap_err();
        assert!(
            matches!(
                err,
                Error::Fenced {
                    epoch: 1,
                    by: 2,
                    ..
                }
            ),
            "{err}"
        );
        check_owner(&store, 2).expect("current");
        assert_eq!(load_epochs(&store).expect("load"), vec![first, second]);
    }
}
