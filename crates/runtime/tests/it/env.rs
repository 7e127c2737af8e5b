//! uv environments: build, warm reuse, concurrent builders, uv's own errors.

use std::collections::BTreeMap;

use lakeplan_runtime::{EnvManager, EnvSpec, RuntimeError, DEFAULT_PYARROW};

use crate::{shared_cache_dir, shared_env, target_tmp, uv};

#[tokio::test]
async fn built_env_imports_pyarrow_and_is_reused_without_uv() {
    let env = shared_env().await;
    assert!(env.root.starts_with(shared_cache_dir()));
    assert_eq!(
        env.requirements,
        vec![format!("pyarrow=={DEFAULT_PYARROW}")]
    );
    // The environment was built in a temporary folder and renamed: it still works.
    let out = std::process::Command::new(&env.python)
        .args([
            "-c",
            "import pyarrow, sys; print(pyarrow.__version__, sys.prefix)",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        stdout.trim(),
        format!("{DEFAULT_PYARROW} {}", env.root.display())
    );

    // Warm: a manager whose uv does not exist finds the finished environment.
    let warm = EnvManager::new(shared_cache_dir(), "/nonexistent/uv".into())
        .ensure(&EnvSpec::default(), false)
        .await
        .unwrap();
    assert!(!warm.installed);
    assert_eq!(warm.key, env.key);
    assert_eq!(warm.python, env.python);
    // Declaring the default pyarrow explicitly is the same environment.
    let explicit = EnvSpec {
        python: None,
        pip: BTreeMap::from([("pyarrow".to_string(), DEFAULT_PYARROW.to_string())]),
    };
    let same = EnvManager::new(shared_cache_dir(), "/nonexistent/uv".into())
        .ensure(&explicit, false)
        .await
        .unwrap();
    assert_eq!(same.key, env.key);
}

#[tokio::test]
async fn python_version_request_and_warning() {
    let env = shared_env().await;
    let minor = env.python_version.rsplit_once('.').unwrap().0.to_string();
    let m = EnvManager::new(shared_cache_dir(), "/nonexistent/uv".into());
    // Asking for the interpreter's own minor version: same environment, no warning.
    let spec = EnvSpec {
        python: Some(minor),
        pip: BTreeMap::new(),
    };
    let e = m.ensure(&spec, true).await.unwrap();
    assert!(e.warnings.is_empty());
    // A version that is not installed: an error when strict...
    let spec = EnvSpec {
        python: Some("3.99".into()),
        pip: BTreeMap::new(),
    };
    let err = m.ensure(&spec, true).await.unwrap_err();
    assert!(matches!(err, RuntimeError::PythonNotFound { .. }), "{err}");
    // ...otherwise the nearest one with a warning naming both (the newest 3.x installed, which
    // may differ from the default python3: use the real uv in case it must be built).
    let m = EnvManager::new(shared_cache_dir(), uv());
    let e = m.ensure(&spec, false).await.unwrap();
    assert_eq!(e.warnings.len(), 1);
    let want = format!(
        "python 3.99 requested by the function, running on {}: 3.99 is not installed",
        e.python_version
    );
    assert_eq!(e.warnings[0], want);
}

/// Two managers building the same new environment at once: one installs, the other waits.
#[tokio::test]
async fn concurrent_builders_install_once() {
    let cache = tempfile::tempdir_in(target_tmp()).unwrap();
    let a = EnvManager::new(cache.path().to_path_buf(), uv());
    let b = EnvManager::new(cache.path().to_path_buf(), uv());
    let spec = EnvSpec::default();
    let (ra, rb) = tokio::join!(a.ensure(&spec, false), b.ensure(&spec, false));
    let (ra, rb) = (ra.unwrap(), rb.unwrap());
    assert_eq!(ra.key, rb.key);
    assert_eq!(
        [ra.installed, rb.installed].iter().filter(|i| **i).count(),
        1
    );
    let leftovers: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".tmp-") || n.ends_with(".lock"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// uv's own message for a package that does not exist. This needs PyPI (reachable here): the
/// resolution fails there, not in our validation.
#[tokio::test]
async fn uv_failure_reports_uvs_message() {
    let cache = tempfile::tempdir_in(target_tmp()).unwrap();
    let m = EnvManager::new(cache.path().to_path_buf(), uv());
    let spec = EnvSpec {
        python: None,
        pip: BTreeMap::from([(
            "definitely-not-a-package-xyz".to_string(),
            "1.0".to_string(),
        )]),
    };
    let err = m.ensure(&spec, false).await.unwrap_err();
    let RuntimeError::Install { packages, message } = &err else {
        panic!("expected an install error, got {err}");
    };
    assert!(
        packages.contains("definitely-not-a-package-xyz==1.0"),
        "{packages}"
    );
    assert!(packages.contains("pyarrow=="), "{packages}");
    assert!(
        message.contains("definitely-not-a-package-xyz"),
        "{message}"
    );
    assert!(!message.is_empty() && message == message.trim());
    // Nothing is left behind: no environment, no temporary folder, no lock.
    let left: Vec<_> = std::fs::read_dir(cache.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "interpreters.json")
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[tokio::test]
async fn invalid_package_is_rejected_before_uv() {
    let m = EnvManager::new(target_tmp().join("never-created"), "/nonexistent/uv".into());
    let spec = EnvSpec {
        python: None,
        pip: BTreeMap::from([("polars".to_string(), "1.0; rm -rf /".to_string())]),
    };
    let err = m.ensure(&spec, false).await.unwrap_err();
    assert!(matches!(err, RuntimeError::InvalidPackage { .. }), "{err}");
    assert!(err.to_string().contains("polars"), "{err}");
    assert!(!target_tmp().join("never-created").exists());
}
