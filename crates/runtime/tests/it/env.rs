//! uv environments: build, warm reuse, concurrent builders, uv's own errors.

use std::collections::BTreeMap;

use lakeplan_runtime::{EnvManager, EnvSpec, RuntimeError, PYARROW_FLOOR};

use crate::{shared_cache_dir, shared_env, target_tmp, uv};

#[tokio::test]
async fn built_env_imports_pyarrow_and_is_reused_without_uv() {
    let env = shared_env().await;
    assert!(env.root.starts_with(shared_cache_dir()));
    assert_eq!(env.requirements, vec![format!("pyarrow>={PYARROW_FLOOR}")]);
    // The resolution is recorded: exactly one pyarrow, at or above the floor.
    let pinned: Vec<&String> = env
        .resolved
        .iter()
        .filter(|r| r.starts_with("pyarrow=="))
        .collect();
    assert_eq!(pinned.len(), 1, "{:?}", env.resolved);
    let version = pinned[0]["pyarrow==".len()..].to_string();
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
    assert_eq!(stdout.trim(), format!("{version} {}", env.root.display()));
    // Compiled at build time: a worker cannot write bytecode into the read-only environment.
    let site = std::fs::read_dir(env.root.join("lib"))
        .unwrap()
        .flatten()
        .map(|e| e.path().join("site-packages/pyarrow/__pycache__"))
        .find(|p| p.is_dir());
    assert!(site.is_some(), "no bytecode under {}", env.root.display());

    // Warm: a manager whose uv does not exist finds the finished environment.
    let warm = EnvManager::new(shared_cache_dir(), "/nonexistent/uv".into())
        .ensure(&EnvSpec::default(), false)
        .await
        .unwrap();
    assert!(!warm.installed);
    assert_eq!(warm.key, env.key);
    assert_eq!(warm.python, env.python);
    assert_eq!(warm.resolved, env.resolved);
    // Declaring any pyarrow is the same environment as declaring none.
    let explicit = EnvSpec {
        python: None,
        pip: BTreeMap::from([("pyarrow".to_string(), "*".to_string())]),
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
    assert!(packages.contains("pyarrow>="), "{packages}");
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

fn pip(pairs: &[(&str, &str)]) -> EnvSpec {
    EnvSpec {
        python: None,
        pip: pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    }
}

fn locked<'a>(resolved: &'a [String], name: &str) -> &'a str {
    resolved
        .iter()
        .find_map(|r| r.strip_prefix(&format!("{name}==")))
        .unwrap_or_else(|| panic!("{name} not in {resolved:?}"))
}

/// Packages that need numpy 1.x get a pyarrow that imports with it, and a package built against
/// numpy 1.x whose metadata does not say so (pandas 1.5.3) gets numpy 1.x. Real installs from PyPI; the cache under the target
/// folder keeps them for the next run.
#[tokio::test]
async fn numpy_1_packages_get_a_pyarrow_that_imports() {
    let m = EnvManager::new(target_tmp().join("runtime-envs-numpy1"), uv());
    let numpy = m.ensure(&pip(&[("numpy", "1.26.4")]), false).await.unwrap();
    assert_eq!(locked(&numpy.resolved, "numpy"), "1.26.4");
    let pa = locked(&numpy.resolved, "pyarrow");
    assert!(pa.starts_with("25."), "{pa}");
    assert!(
        numpy
            .resolution_notes
            .iter()
            .any(|n| n.starts_with("pyarrow<26")),
        "{:?}",
        numpy.resolution_notes
    );
    let pandas = m.ensure(&pip(&[("pandas", "1.5.3")]), false).await.unwrap();
    assert!(locked(&pandas.resolved, "numpy").starts_with("1."));
    assert!(
        pandas
            .resolution_notes
            .iter()
            .any(|n| n.starts_with("numpy<2") && n.contains("import pandas failed")),
        "{:?}",
        pandas.resolution_notes
    );
    for env in [&numpy, &pandas] {
        let out = std::process::Command::new(&env.python)
            .args([
                "-c",
                "import pyarrow, numpy; print(pyarrow.__version__, numpy.__version__); \
                 import importlib.util; \
                 importlib.util.find_spec('pandas') and __import__('pandas')",
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{:?}: {}",
            env.resolved,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
