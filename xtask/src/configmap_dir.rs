//! A directory laid out as the kubelet mounts a ConfigMap: the file is a
//! link through `..data` to a timestamped directory, and an update writes
//! a new directory and swaps the `..data` link in one rename. The swap
//! bench edits the host's config file this way, so it measures the path a
//! real ConfigMap edit takes (the host's watch sees the link replaced).

use anyhow::Result;
use std::path::{Path, PathBuf};

pub struct ConfigMapDir {
    dir: PathBuf,
    /// The name of the current data directory is `..{version}`.
    version: u32,
}

impl ConfigMapDir {
    /// Makes `dir` (emptied first) hold `guest.toml` with `contents`.
    pub fn new(dir: &Path, contents: &str) -> Result<ConfigMapDir> {
        let _ = std::fs::remove_dir_all(dir);
        std::fs::create_dir_all(dir.join("..0"))?;
        std::fs::write(dir.join("..0/guest.toml"), contents)?;
        std::os::unix::fs::symlink("..0", dir.join("..data"))?;
        std::os::unix::fs::symlink("..data/guest.toml", dir.join("guest.toml"))?;
        Ok(ConfigMapDir { dir: dir.to_path_buf(), version: 0 })
    }

    /// The config file's path, as the host is given it.
    pub fn file(&self) -> PathBuf {
        self.dir.join("guest.toml")
    }

    /// Replaces the file's contents as the kubelet does.
    pub fn update(&mut self, contents: &str) -> Result<()> {
        let old = self.dir.join(format!("..{}", self.version));
        self.version += 1;
        let new = self.dir.join(format!("..{}", self.version));
        std::fs::create_dir_all(&new)?;
        std::fs::write(new.join("guest.toml"), contents)?;
        std::os::unix::fs::symlink(format!("..{}", self.version), self.dir.join("..data_tmp"))?;
        std::fs::rename(self.dir.join("..data_tmp"), self.dir.join("..data"))?;
        std::fs::remove_dir_all(old)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::ConfigMapDir;

    #[test]
    fn an_update_replaces_what_the_file_reads_and_leaves_one_data_directory() {
        let dir = std::env::temp_dir().join(format!("xtask-configmap-{}", std::process::id()));
        let mut map = ConfigMapDir::new(&dir, "guest = \"prime\"\n").unwrap();
        assert_eq!(std::fs::read_to_string(map.file()).unwrap(), "guest = \"prime\"\n");
        map.update("guest = \"tracker\"\n").unwrap();
        map.update("guest = \"broker\"\n").unwrap();
        assert_eq!(std::fs::read_to_string(map.file()).unwrap(), "guest = \"broker\"\n");
        let mut names: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
        names.sort();
        assert_eq!(names, ["..2", "..data", "guest.toml"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
