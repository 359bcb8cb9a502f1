//! The final step of init: find the program inside the container and execve it.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

/// argv and envp, converted before fork so that a NUL byte is reported at `create`.
#[derive(Debug, Clone)]
pub struct ExecPlan {
    pub argv: Vec<CString>,
    pub env: Vec<String>,
}

impl ExecPlan {
    pub fn from_process(process: &Process) -> Result<Self, String> {
        let argv = process
            .args()
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, a)| {
                CString::new(a.as_bytes())
                    .map_err(|_| format!("process.args[{i}]: contains a NUL byte"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        if argv.is_empty() {
            return Err("process.args: must name a program to run".into());
        }
        let env = process.env().clone().unwrap_or_default();
        if let Some(i) = env.iter().position(|e| e.contains('\0')) {
            return Err(format!("process.env[{i}]: contains a NUL byte"));
        }
        Ok(ExecPlan { argv, env })
    }

    fn env_var(&self, name: &str) -> Option<&str> {
        self.env
            .iter()
            .rev()
            .find_map(|e| e.strip_prefix(name)?.strip_prefix('='))
    }

    /// Resolves argv[0] inside the (already pivoted) root, searching the container's PATH the
    /// way execvp would. Done before `Ready` so that a missing program fails `create`.
    pub fn resolve(&self) -> Result<PathBuf, String> {
        let arg0 = self.argv[0].to_string_lossy().into_owned();
        if arg0.contains('/') {
            return Ok(PathBuf::from(arg0));
        }
        let path = self
            .env_var("PATH")
            .unwrap_or("/usr/local/bin:/usr/bin:/bin");
        path.split(':')
            .map(|dir| Path::new(if dir.is_empty() { "." } else { dir }).join(&arg0))
            .find(|candidate| is_executable(candidate))
            .ok_or_else(|| format!("process.args[0]: {arg0:?}: executable file not found in $PATH"))
    }

    /// Adds HOME from the container's /etc/passwd when the config does not set it, as runc does.
    pub fn add_home(&mut self, uid: u32) {
        if self.env_var("HOME").is_some() {
            return;
        }
        let home = std::fs::read_to_string("/etc/passwd")
            .ok()
            .and_then(|passwd| home_of(&passwd, uid))
            .unwrap_or_else(|| "/".into());
        self.env.push(format!("HOME={home}"));
    }

    /// execve; only returns on failure.
    pub fn exec(&self, program: &Path) -> String {
        let Ok(path) = CString::new(program.as_os_str().as_bytes()) else {
            return "process.args[0]: contains a NUL byte".into();
        };
        let env: Vec<CString> = self
            .env
            .iter()
            .filter_map(|e| CString::new(e.as_bytes()).ok())
            .collect();
        match nix::unistd::execve(&path, &self.argv, &env) {
            Err(e) => format!("exec {}: {e}", program.display()),
        }
    }
}

fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn home_of(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|line| {
        let fields: Vec<&str> = line.split(':').collect();
        (fields.len() >= 6 && fields[2].parse() == Ok(uid)).then(|| fields[5].to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(args: &[&str], env: &[&str]) -> ExecPlan {
        ExecPlan {
            argv: args.iter().map(|a| CString::new(*a).unwrap()).collect(),
            env: env.iter().map(|e| e.to_string()).collect(),
        }
    }

    #[test]
    fn resolves_through_path_and_reports_missing_programs() {
        let p = plan(&["sh"], &["PATH=/nonexistent:/bin:/usr/bin"]);
        assert!(p.resolve().unwrap().ends_with("sh"));
        let err = plan(&["no-such-prog-xyz"], &["PATH=/bin"])
            .resolve()
            .unwrap_err();
        assert!(err.contains("process.args[0]"), "{err}");
        assert_eq!(
            plan(&["/x/y"], &[]).resolve().unwrap(),
            PathBuf::from("/x/y")
        );
    }

    #[test]
    fn home_comes_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/sh\ntest:x:1000:1000::/home/test:/bin/sh\n";
        assert_eq!(home_of(passwd, 1000).as_deref(), Some("/home/test"));
        assert_eq!(home_of(passwd, 5), None);
        let mut p = plan(&["sh"], &["HOME=/keep"]);
        p.add_home(0);
        assert_eq!(p.env, vec!["HOME=/keep"]);
    }
}
