//! Every job Braid runs, one type for the scheduler, the CLI and the admin API alike.

use serde_json::Value;

use crate::procedures::ProcedureError;
use crate::procedures::republish::PublishRequest;

/// A job and its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JobKind {
    /// Batch recompute of every view.
    Batch,
    /// Compaction of the Delta table's small files.
    Compact,
    /// Vacuum of the Delta table.
    Vacuum,
    /// Rebuild the speed rows from the last cut (`from_cut`, when given, must be it).
    ReplaySpeed {
        /// The cut to replay from.
        from_cut: Option<i64>,
    },
    /// Move a speed layer that Kafka's retention left behind to the sink's positions.
    Recover {
        /// Recover even when no partition is behind Kafka's retention.
        force: bool,
    },
    /// Records of an event-time range from the lake back into a topic.
    ReplayPublish(PublishRequest),
    /// Old alert history and dead letters deleted (the configured retentions).
    Prune,
}

/// Every job's name, as the API and `--help` list them.
pub const JOB_NAMES: &str = "batch, compact, vacuum, prune, replay_speed, recover, replay_publish";

/// Why a job request (a name and JSON parameters) names no job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobRequestError {
    /// No job has this name.
    #[error("unknown job `{name}`; the jobs are {JOB_NAMES}")]
    UnknownJob {
        /// The name asked for.
        name: String,
    },
    /// A parameter is wrong.
    #[error("{message}")]
    BadParameter {
        /// The parameter.
        parameter: String,
        /// What is wrong.
        message: String,
    },
}

fn bad(parameter: &str, message: String) -> JobRequestError {
    JobRequestError::BadParameter {
        parameter: parameter.to_string(),
        message,
    }
}

/// The parameters object, refusing keys `job` does not take.
fn parameters_of<'a>(
    job: &str,
    parameters: &'a Value,
    allowed: &[&str],
) -> Result<&'a serde_json::Map<String, Value>, JobRequestError> {
    let object = parameters
        .as_object()
        .ok_or_else(|| bad("body", "the body must be a JSON object".into()))?;
    if let Some(name) = object.keys().find(|k| !allowed.contains(&k.as_str())) {
        let takes = if allowed.is_empty() {
            "no parameters".to_string()
        } else {
            allowed.join(", ")
        };
        return Err(bad(
            name,
            format!("job `{job}` does not take `{name}`; it takes {takes}"),
        ));
    }
    Ok(object)
}

fn text(
    object: &serde_json::Map<String, Value>,
    name: &str,
    required: bool,
) -> Result<Option<String>, JobRequestError> {
    match object.get(name) {
        Some(Value::String(s)) => Ok(Some(s.clone())),
        None if !required => Ok(None),
        _ => Err(bad(name, format!("`{name}` must be given as a string"))),
    }
}

fn whole(
    object: &serde_json::Map<String, Value>,
    name: &str,
) -> Result<Option<i64>, JobRequestError> {
    match object.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_i64()
            .map(Some)
            .ok_or_else(|| bad(name, format!("`{name}` must be a whole number"))),
    }
}

fn flag(object: &serde_json::Map<String, Value>, name: &str) -> Result<bool, JobRequestError> {
    match object.get(name) {
        None => Ok(false),
        Some(Value::Bool(value)) => Ok(*value),
        Some(_) => Err(bad(name, format!("`{name}` must be true or false"))),
    }
}

impl JobKind {
    /// The job's name in the config, the history and `braid jobs run NAME`.
    pub fn name(&self) -> &'static str {
        match self {
            JobKind::Batch => "batch",
            JobKind::Compact => "compact",
            JobKind::Vacuum => "vacuum",
            JobKind::ReplaySpeed { .. } => "replay_speed",
            JobKind::Recover { .. } => "recover",
            JobKind::ReplayPublish(_) => "replay_publish",
            JobKind::Prune => "prune",
        }
    }

    /// A job that takes no parameters, by name (`braid jobs run NAME`).
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "batch" => Some(JobKind::Batch),
            "compact" => Some(JobKind::Compact),
            "vacuum" => Some(JobKind::Vacuum),
            "prune" => Some(JobKind::Prune),
            _ => None,
        }
    }

    /// A job by name with its parameters as a JSON object (the admin API's body).
    pub fn from_request(name: &str, parameters: &Value) -> Result<Self, JobRequestError> {
        match name {
            "batch" | "compact" | "vacuum" | "prune" => {
                parameters_of(name, parameters, &[])?;
                Ok(Self::parse(name).expect("a parameterless job"))
            }
            "replay_speed" => {
                let object = parameters_of(name, parameters, &["from_cut"])?;
                let from_cut = whole(object, "from_cut")?;
                if from_cut.is_some_and(|cut| cut < 0) {
                    return Err(bad(
                        "from_cut",
                        "`from_cut` is a cut number, 0 or more".into(),
                    ));
                }
                Ok(JobKind::ReplaySpeed { from_cut })
            }
            "recover" => {
                let object = parameters_of(name, parameters, &["force"])?;
                Ok(JobKind::Recover {
                    force: flag(object, "force")?,
                })
            }
            "replay_publish" => {
                let object =
                    parameters_of(name, parameters, &["from", "to", "topic", "rate", "id"])?;
                let request = PublishRequest {
                    from: text(object, "from", true)?.unwrap_or_default(),
                    to: text(object, "to", true)?.unwrap_or_default(),
                    topic: text(object, "topic", true)?.unwrap_or_default(),
                    rate: whole(object, "rate")?.map(|r| r.clamp(1, i64::from(u32::MAX)) as u32),
                    id: text(object, "id", false)?,
                };
                match request.checked_range() {
                    Err(ProcedureError::BadRequest { parameter, message }) => {
                        Err(bad(parameter, format!("`{parameter}`: {message}")))
                    }
                    _ => Ok(JobKind::ReplayPublish(request)),
                }
            }
            _ => Err(JobRequestError::UnknownJob {
                name: name.to_string(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_name_a_job_and_refuse_what_it_does_not_take() {
        assert_eq!(
            JobKind::from_request("recover", &serde_json::json!({"force": true})),
            Ok(JobKind::Recover { force: true })
        );
        assert_eq!(
            JobKind::from_request("batch", &serde_json::json!({})),
            Ok(JobKind::Batch)
        );
        let refused = JobKind::from_request("batch", &serde_json::json!({"x": 1})).unwrap_err();
        assert!(
            refused.to_string().contains("does not take `x`"),
            "{refused}"
        );
        let unknown = JobKind::from_request("nope", &serde_json::json!({})).unwrap_err();
        assert!(unknown.to_string().contains(JOB_NAMES), "{unknown}");
        let wrong = JobKind::from_request("recover", &serde_json::json!({"force": "yes"}));
        assert!(
            matches!(wrong, Err(JobRequestError::BadParameter { parameter, .. }) if parameter == "force")
        );
    }
}
