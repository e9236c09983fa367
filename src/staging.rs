//! Writing a model folder without losing the one it replaces: the trainer writes every file
//! into a hidden sibling folder, checks it there, and only then swaps it in by renames, so a
//! run that fails, is interrupted (Ctrl-C) or killed leaves the previous folder as it was.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// A sibling of `out` (same parent, so renames stay on one file system) being written.
pub struct Staging {
    out: PathBuf,
    dir: PathBuf,
}

impl Staging {
    /// Start writing `out`: an empty `.<name>.partial` beside it (what an earlier interrupted
    /// run left there is removed first).
    pub fn new(out: &Path) -> Result<Self> {
        let dir = sibling(out, "partial")?;
        remove_if_present(&dir)?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        Ok(Self {
            out: out.to_path_buf(),
            dir,
        })
    }

    /// The folder to write into.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Put the written folder in `out`'s place: the old one is renamed aside, the new one
    /// renamed in, then the old one removed. Until the second rename `out` still holds the
    /// previous folder; after it, the new one in full.
    pub fn commit(self) -> Result<PathBuf> {
        let old = sibling(&self.out, "old")?;
        remove_if_present(&old)?;
        let had_one = self.out.exists();
        if had_one {
            std::fs::rename(&self.out, &old)
                .with_context(|| format!("cannot move {} aside", self.out.display()))?;
        }
        if let Err(e) = std::fs::rename(&self.dir, &self.out) {
            if had_one {
                // Put the previous folder back before saying what failed.
                let _ = std::fs::rename(&old, &self.out);
            }
            return Err(e)
                .with_context(|| format!("cannot move the new folder to {}", self.out.display()));
        }
        if had_one {
            // The new folder is in place: a leftover old one is only clutter (the next run
            // removes it), never a reason to fail the run.
            if let Err(e) = remove_if_present(&old) {
                eprintln!("warning: {e:#}");
            }
        }
        Ok(self.out)
    }
}

/// `.<name>.<suffix>` beside `out`.
fn sibling(out: &Path, suffix: &str) -> Result<PathBuf> {
    let name = out
        .file_name()
        .with_context(|| format!("{} is not a folder name", out.display()))?;
    let parent = out.parent().unwrap_or(Path::new(""));
    Ok(parent.join(format!(".{}.{suffix}", name.to_string_lossy())))
}

fn remove_if_present(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", dir.display()))
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, file: &str) -> String {
        std::fs::read_to_string(dir.join(file)).unwrap()
    }

    #[test]
    fn the_old_folder_stays_until_the_new_one_is_complete() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("model");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("model.bpk"), "old").unwrap();
        std::fs::write(out.join("extra"), "old only").unwrap();

        let staging = Staging::new(&out).unwrap();
        std::fs::write(staging.dir().join("model.bpk"), "new").unwrap();
        assert_eq!(
            read(&out, "model.bpk"),
            "old",
            "untouched while the new one is written"
        );
        drop(staging); // a run that stops here (an error) leaves the old folder as it was
        assert_eq!(read(&out, "model.bpk"), "old");

        // The next run starts from an empty staging folder, whatever the last one left.
        let staging = Staging::new(&out).unwrap();
        assert_eq!(std::fs::read_dir(staging.dir()).unwrap().count(), 0);
        std::fs::write(staging.dir().join("model.bpk"), "new").unwrap();
        staging.commit().unwrap();
        assert_eq!(read(&out, "model.bpk"), "new");
        assert!(
            !out.join("extra").exists(),
            "the new folder replaces, not merges"
        );
        let names: Vec<_> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec!["model"], "nothing left beside it");
    }

    #[test]
    fn a_first_folder_is_created() {
        let tmp = tempfile::tempdir().unwrap();
        let out = tmp.path().join("new");
        let staging = Staging::new(&out).unwrap();
        std::fs::write(staging.dir().join("config.json"), "{}").unwrap();
        staging.commit().unwrap();
        assert_eq!(read(&out, "config.json"), "{}");
    }
}
