//! What every job shares, whatever its source and sink: the settings and
//! the decoder trait, the state directory (lock, layout record, local
//! checkpoint folder), starting a partition's actor, and the shutdown
//! flag. File jobs ([`crate::job`]) and Kafka jobs ([`crate::kafka`]) are
//! both built on it; neither imports the other.

mod partition;
mod settings;
mod state_dir;

pub(crate) use partition::{spawn_partition, watch_shutdown};
pub use settings::{
    CheckpointTrigger, DEFAULT_MAX_FUTURE, DEFAULT_MAX_RECORD_BYTES, Decode, Decoded,
    EVENT_TIME_RANGE, Settings, TOO_LARGE_PREFIX,
};
pub(crate) use settings::{decode_checked, too_large};
pub(crate) use state_dir::{
    check_layout, clear_local_checkpoints, derived_job_id, job_id, lock_state_dir,
};
