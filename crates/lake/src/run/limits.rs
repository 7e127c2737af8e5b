//! The limits a pipeline function runs under when it declares none (`@resources`), set by
//! whoever runs the machine that executes it (a server's or worker's environment):
//!
//! | variable | default | limit |
//! |---|---|---|
//! | `LAKEPLAN_FUNCTION_MEMORY_GB` | 8 | address space of the function's sandbox (`@resources(memory=...)` overrides) |
//! | `LAKEPLAN_FUNCTION_MAX_PROCESSES` | 512 | processes and threads in the sandbox at once |
//! | `LAKEPLAN_FUNCTION_TIMEOUT_SECS` | 3600 | run time (`@resources(timeout=...)` overrides) |
//!
//! A value that is not a positive number is an error naming the variable, before anything runs.

use std::time::Duration;

use lakeplan_core::Result;

use crate::env_vars::{self, AtLeast};

pub(crate) const MEMORY_VAR: &str = "LAKEPLAN_FUNCTION_MEMORY_GB";
pub(crate) const PROCESSES_VAR: &str = "LAKEPLAN_FUNCTION_MAX_PROCESSES";
pub(crate) const TIMEOUT_VAR: &str = "LAKEPLAN_FUNCTION_TIMEOUT_SECS";

/// The defaults of this machine; see the module's documentation.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct FunctionLimits {
    pub(crate) memory_bytes: u64,
    pub(crate) max_processes: u64,
    pub(crate) timeout: Duration,
}

impl FunctionLimits {
    pub(crate) fn from_env() -> Result<FunctionLimits> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<FunctionLimits> {
        let read =
            |name: &str, default: f64| env_vars::number(&var, name, default, AtLeast::Positive);
        Ok(FunctionLimits {
            memory_bytes: (read(MEMORY_VAR, 8.0)? * (1u64 << 30) as f64) as u64,
            max_processes: (read(PROCESSES_VAR, 512.0)?.ceil() as u64).max(1),
            timeout: Duration::from_secs_f64(read(TIMEOUT_VAR, 3600.0)?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_operator_values_and_bad_values_named() {
        let none = FunctionLimits::from_vars(|_| None).unwrap();
        assert_eq!(none.memory_bytes, 8 << 30);
        assert_eq!(none.max_processes, 512);
        assert_eq!(none.timeout, Duration::from_secs(3600));
        let set = FunctionLimits::from_vars(|n| {
            Some(match n {
                MEMORY_VAR => "0.5".into(),
                PROCESSES_VAR => "64".into(),
                _ => "90".into(),
            })
        })
        .unwrap();
        assert_eq!(set.memory_bytes, 512 << 20);
        assert_eq!(set.max_processes, 64);
        assert_eq!(set.timeout, Duration::from_secs(90));
        for bad in ["0", "-1", "lots", "inf"] {
            let e = FunctionLimits::from_vars(|n| (n == PROCESSES_VAR).then(|| bad.to_string()))
                .unwrap_err()
                .to_string();
            assert!(e.contains(PROCESSES_VAR) && e.contains(bad), "{e}");
        }
    }
}
