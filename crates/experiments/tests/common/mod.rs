//! What the command-line tests share: running the `dam` binary and a fresh output folder.

use std::path::PathBuf;
use std::process::{Command, Output};

/// Runs the `dam` binary of this build with `args`.
pub fn dam(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dam"))
        .args(args)
        .output()
        .expect("run dam")
}

/// A folder `dam-{prefix}-{pid}-{name}` under the temporary directory, removed if a
/// previous run left it (not created: the commands create their `--out`).
pub fn tmp(prefix: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dam-{prefix}-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}
