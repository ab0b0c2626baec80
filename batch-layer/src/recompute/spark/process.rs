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

/// The command that runs `program` with `args` under the group leader. Configure its
/// environment and output, then [`start`] it.
pub fn command(program: &str) -> std::process::Command {
    let mut command = std::process::Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(LEADER)
        .arg("braid-spark-job")
        .arg(program);
    command
}

/// Starts `command` in a process group of its own that dies with this process.
pub async fn start(mut command: std::process::Command) -> io::Result<Job> {
    use std::os::unix::process::CommandExt as _;
    command.process_group(0);
    #[cfg(target_os = "linux")]
    {
        let parent = std::process::id();
        // SAFETY: only async-signal-safe calls (prctl, getppid) between fork and exec.
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
