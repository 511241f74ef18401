//! Finding the config file when none is named on the command line: the
//! working directory's `levee.toml`, `levee.yaml` or `levee.yml`, then the
//! path in `LEVEE_CONFIG`, in that order.

use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

/// The environment variable naming the config file when the working
/// directory has none.
pub const CONFIG_ENV: &str = "LEVEE_CONFIG";

/// The file names looked for in the working directory.
pub const DEFAULT_NAMES: [&str; 3] = ["levee.toml", "levee.yaml", "levee.yml"];

/// Why no config file could be chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiscoveryError {
    /// More than one of the default names exists: which one is meant is a
    /// guess Levee does not make.
    Ambiguous {
        /// The names found, in [`DEFAULT_NAMES`] order.
        found: Vec<&'static str>,
    },
    /// None of the default names exists and `LEVEE_CONFIG` is unset or empty.
    NotFound,
}

impl DiscoveryError {
    /// A likely fix.
    pub fn help(&self) -> String {
        match self {
            DiscoveryError::Ambiguous { found } => {
                format!("name the one to use: `-c {}`", found.first().unwrap_or(&"levee.toml"))
            }
            DiscoveryError::NotFound => format!(
                "name the file with `-c FILE`, create levee.toml here, or set {CONFIG_ENV}=/path/to/levee.toml"
            ),
        }
    }
}

impl fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DiscoveryError::Ambiguous { found } => {
                let names = match found.as_slice() {
                    [a, b] => format!("both {a} and {b}"),
                    [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
                    [] => String::new(),
                };
                write!(
                    f,
                    "no config file named, and the working directory has {names}"
                )
            }
            DiscoveryError::NotFound => write!(
                f,
                "no config file named: looked for {}, {} and {} in the working directory, then {CONFIG_ENV}, which is not set",
                DEFAULT_NAMES[0], DEFAULT_NAMES[1], DEFAULT_NAMES[2]
            ),
        }
    }
}

impl std::error::Error for DiscoveryError {}

/// The config file to use when none is named: the one default name that
/// exists in `dir` (joined to `dir`, so `Path::new("")` gives the bare
/// name), else `env` (the value of `LEVEE_CONFIG`) when set and not empty.
pub fn discover(dir: &Path, env: Option<OsString>) -> Result<PathBuf, DiscoveryError> {
    let found: Vec<&'static str> = DEFAULT_NAMES
        .into_iter()
        .filter(|name| candidate(dir, name).is_file())
        .collect();
    match found.as_slice() {
        [one] => Ok(dir.join(one)),
        [] => env
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .ok_or(DiscoveryError::NotFound),
        _ => Err(DiscoveryError::Ambiguous { found }),
    }
}

/// `dir/name`, with the empty directory meaning the working directory.
fn candidate(dir: &Path, name: &str) -> PathBuf {
    if dir.as_os_str().is_empty() {
        Path::new(".").join(name)
    } else {
        dir.join(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(test: &str, files: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "levee-config-discover-{}-{test}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create scratch dir");
        for f in files {
            std::fs::write(dir.join(f), "").expect("write file");
        }
        dir
    }

    #[test]
    fn the_working_directory_comes_before_the_environment() {
        let dir = scratch("order", &["levee.yml"]);
        let env = Some(OsString::from("/etc/levee/levee.toml"));
        assert_eq!(discover(&dir, env.clone()), Ok(dir.join("levee.yml")));
        std::fs::remove_file(dir.join("levee.yml")).expect("remove");
        assert_eq!(
            discover(&dir, env),
            Ok(PathBuf::from("/etc/levee/levee.toml"))
        );
        assert_eq!(
            discover(&dir, Some(OsString::new())),
            Err(DiscoveryError::NotFound),
            "an empty LEVEE_CONFIG is unset"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn two_default_names_are_refused() {
        let dir = scratch("ambiguous", &["levee.toml", "levee.yaml", "levee.yml"]);
        let err = discover(&dir, None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no config file named, and the working directory has levee.toml, levee.yaml and levee.yml"
        );
        assert_eq!(err.help(), "name the one to use: `-c levee.toml`");
        // A directory of that name is not a config file.
        let dir = scratch("directory", &["levee.toml"]);
        std::fs::create_dir(dir.join("levee.yaml")).expect("mkdir");
        assert_eq!(discover(&dir, None), Ok(dir.join("levee.toml")));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
