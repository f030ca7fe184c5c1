//! A job's state directory: its lock, its layout record (partitions,
//! store, job id), and the folder for local checkpoints.

use std::path::PathBuf;

use super::Settings;
use crate::{Error, Result};

/// Local checkpoints of a run that died are of no use: starts clean.
/// Returns the folder where local checkpoints are made.
pub(crate) fn clear_local_checkpoints(settings: &Settings) -> Result<PathBuf> {
    let local_dir = settings.state_dir.join("checkpoints-local");
    match std::fs::remove_dir_all(&local_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(Error::Io {
            what: format!("clearing {}", local_dir.display()),
            source: e,
        }),
        _ => Ok(local_dir),
    }
}

/// A field of the state directory's layout record, if recorded.
fn layout_field(settings: &Settings, name: &str) -> Result<Option<String>> {
    let path = settings.state_dir.join("weir-layout");
    let found = match std::fs::read_to_string(&path) {
        Ok(found) => found,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(Error::Io {
                what: format!("reading {}", path.display()),
                source,
            });
        }
    };
    Ok(found
        .lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix('='))
        .map(str::to_string))
}

/// The job's id: the one configured, else the one recorded in the state
/// directory, else `derive()`'s.
pub(crate) fn job_id(settings: &Settings, derive: impl FnOnce() -> String) -> Result<String> {
    let id = match settings.checkpoints.as_ref().and_then(|c| c.job_id.clone()) {
        Some(id) => id,
        None => match layout_field(settings, "job")? {
            Some(id) => id,
            None => derive(),
        },
    };
    weir_state::owner::validate_job_id(&id)?;
    Ok(id)
}

/// A file-mode job's id when none is given: the input's name and a hash of
/// the input and the processor type, so another input or another processor
/// is another job.
pub(crate) fn derived_job_id(input: &str, processor: &str) -> String {
    let stem: String = std::path::Path::new(input)
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default()
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    let stem = stem.trim_start_matches(['.', '_', '-']);
    let mut h = crc32fast::Hasher::new();
    h.update(input.as_bytes());
    h.update(&[0]);
    h.update(processor.as_bytes());
    let hash = h.finalize();
    if stem.is_empty() {
        format!("job-{hash:08x}")
    } else {
        format!("{stem}-{hash:08x}")
    }
}

/// Keys are spread over partitions by hash, so state written with one
/// partition count is unreadable with another: refuse rather than lose it.
/// The snapshot store is recorded too: resuming against another (or an
/// unmounted, empty) store would look like a fresh start and truncate the
/// outputs, so a different store is refused unless told to start empty.
pub(crate) fn check_layout(settings: &Settings, partitions: &str, job: &str) -> Result<()> {
    let path = settings.state_dir.join("weir-layout");
    let store = settings
        .checkpoints
        .as_ref()
        .map_or_else(|| "none".to_string(), |c| c.store.describe());
    let expected = format!("partitions={partitions}\nstore={store}\njob={job}\n");
    let field = |name: &str| layout_field(settings, name);
    if let Some(p) = field("partitions")?
        && p != partitions
    {
        return Err(Error::Config(format!(
            "state directory {} was written with partitions={p}, this job has partitions={partitions}: \
             use the same partitions or a new state directory",
            settings.state_dir.display(),
        )));
    }
    let start_empty = settings.checkpoints.as_ref().is_some_and(|c| c.start_empty);
    if let Some(j) = field("job")?
        && j != job
        && !start_empty
    {
        return Err(Error::Config(format!(
            "state directory {} belongs to job {j}, not {job}: use that job id, a new state \
             directory, or --start-empty to start over",
            settings.state_dir.display()
        )));
    }
    if let Some(s) = field("store")?
        && s != store
        && !start_empty
    {
        return Err(Error::Config(format!(
            "state directory {} belongs to checkpoint store {s}, not {store}: use the same store, \
             a new state directory, or --start-empty to start over",
            settings.state_dir.display()
        )));
    }
    if std::fs::read_to_string(&path).ok().as_deref() != Some(expected.as_str()) {
        std::fs::write(&path, expected).map_err(|source| Error::Io {
            what: format!("writing {}", path.display()),
            source,
        })?;
    }
    Ok(())
}

/// Takes the state directory's lock, so two processes never share it.
pub(crate) fn lock_state_dir(settings: &Settings) -> Result<std::fs::File> {
    let path = settings.state_dir.join("weir.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::Io {
            what: format!("opening {}", path.display()),
            source: e,
        })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Config(format!(
            "state directory {} is in use by another process",
            settings.state_dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::Io {
            what: format!("locking {}", path.display()),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::derived_job_id;

    #[test]
    fn derived_job_ids_name_the_input_and_tell_jobs_apart() {
        let file = derived_job_id("/data/in/events.cef", "cef::Alerts");
        assert!(file.starts_with("events-"), "{file}");
        let generated = derived_job_id("generator(events=10, keys=2, seed=1)", "cef::Alerts");
        assert!(generated.starts_with("generator-"), "{generated}");
        let other = derived_job_id("/data/in/events.cef", "cef::Other");
        assert_ne!(file, other, "another processor is another job");
        assert_ne!(file, derived_job_id("/data/out/events.cef", "cef::Alerts"));
        for id in [file, generated, other, derived_job_id("(", "p")] {
            weir_state::owner::validate_job_id(&id).expect("a valid job id");
        }
        assert_eq!(
            derived_job_id("/x/.hidden", "p").split('-').next(),
            Some("hidden")
        );
    }
}
