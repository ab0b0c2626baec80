//! Starting spark-submit so that the job never outlives Braid.
//!
//! spark-submit runs in its own process group (with the JVM and the Python driver it starts),
//! so that a timeout kills all of it. A group of its own also means that nothing kills it when
//! Braid is killed: a SIGKILLed Braid would leave the job running and writing. So the group's
//! leader is a small `sh` that starts spark-submit and, on SIGTERM, kills its whole group; the
//! kernel sends it that SIGTERM when its parent dies (`PR_SET_PDEATHSIG`, Linux). The parent
//! the kernel watches is the spawning *thread*, so the job is spawned and waited for on a
//! thread of its own that lives exactly as long as the job.

use std::io;
use std::process::ExitStatus;

/// The group leader: starts the command given as its arguments, and kills its whole process
/// group (spark-submit and everything it started, itself included) on SIGTERM, SIGHUP or
/// SIGINT.
const LEADER: &str = r#"trap 'kill -KILL 0' TERM HUP INT
"$@" &
wait $!
"#;

/// A running job: its process group, and its exit status when it ends.
pub struct Job {
    pid: u32,
    done: tokio::sync::oneshot::Receiver<io::Result<ExitStatus>>,
    ended: bool,
}

/// The command that runs `program` under the group leader; add its arguments, environment and
/// output, then [`start`] it. `program` is looked up here (a path, or a name on `PATH`), so that
/// a missing one is an error to start, not a job that fails.
pub fn command(program: &str) -> io::Result<std::process::Command> {
    let resolved = resolve(program)?;
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(LEADER)
        .arg("braid-spark-job")
        .arg(resolved);
    Ok(command)
}

/// `program` as the shell would run it: a path as given, a bare name found on `PATH`; an
/// executable file either way.
fn resolve(program: &str) -> io::Result<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt as _;
    let executable = |path: &std::path::Path| {
        std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    let found = if program.contains('/') {
        Some(std::path::PathBuf::from(program)).filter(|p| executable(p))
    } else {
        std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join(program))
                .find(|p| executable(p))
        })
    };
    found.ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no such executable file"))
}

/// Starts `command` in a process group of its own that dies with this process.
pub async fn start(mut command: std::process::Command) -> io::Result<Job> {
    use std::os::unix::process::CommandExt as _;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
        #[allow(unsafe_code)]
        unsafe {
            command.pre_exec(move || {
                if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM as libc::c_ulong) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // The parent died before the signal was armed: nobody will send it.
                if libc::getppid() as u32 != parent {
                    return Err(io::Error::from_raw_os_error(libc::ESRCH));
                }
                Ok(())
            });
        }
    }
    let (started_tx, started_rx) = tokio::sync::oneshot::channel();
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("spark-submit".into())
        .spawn(move || match command.spawn() {
            Ok(mut child) => {
                let _ = started_tx.send(Ok(child.id()));
                let _ = done_tx.send(child.wait());
            }
            Err(error) => {
                let _ = started_tx.send(Err(error));
            }
        })?;
    let pid = started_rx
        .await
        .map_err(|_| io::Error::other("the thread starting spark-submit ended"))??;
    Ok(Job {
        pid,
        done: done_rx,
        ended: false,
    })
}

impl Job {
    /// Waits until the job ends.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        let status = (&mut self.done)
            .await
            .map_err(|_| io::Error::other("the thread waiting for spark-submit ended"))?;
        self.ended = true;
        status
    }

    /// Kills the job's whole process group.
    pub fn kill(&self) {
        if !self.ended {
            // SAFETY: a plain system call; the group is the job's own until it is reaped,
            // which `ended` records.
            #[allow(unsafe_code)]
            unsafe {
                libc::killpg(self.pid as libc::pid_t, libc::SIGKILL);
            }
        }
    }
}

impl Drop for Job {
    /// A run dropped while its job runs (the run's future cancelled) kills the job.
    fn drop(&mut self) {
        self.kill();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_program_is_an_error_to_start_and_a_found_one_runs_under_the_leader() {
        for missing in ["/nonexistent/spark-submit", "braid-no-such-spark-submit"] {
            let error = command(missing).expect_err(missing);
            assert_eq!(error.kind(), io::ErrorKind::NotFound, "{missing}");
        }
        let command = command("sh").unwrap();
        let args: Vec<_> = command.get_args().collect();
        assert_eq!(args[0], "-c");
        assert!(std::path::Path::new(args[3]).is_absolute(), "{args:?}");
    }

    #[tokio::test]
    async fn the_jobs_exit_status_is_the_programs() {
        let mut failing = command("sh").unwrap();
        failing.args(["-c", "exit 3"]);
        let status = start(failing).await.unwrap().wait().await.unwrap();
        assert_eq!(status.code(), Some(3));
    }
}
