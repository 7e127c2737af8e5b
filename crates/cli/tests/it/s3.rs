//! The lake on a real S3-compatible server (moto's server mode from the repo's venv) on
//! 127.0.0.1: warehouse in a bucket, imports from s3:// globs, branch, query, merge.

use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::{data, Lake};

fn venv_bin(name: &str) -> PathBuf {
    let p = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../.venv/bin")
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run scripts/setup.sh (it installs moto's S3 server into .venv)",
        p.display()
    );
    p
}

/// A moto S3 server on a free loopback port, stopped on drop.
struct S3Server {
    child: Child,
    endpoint: String,
}

impl S3Server {
    fn start() -> S3Server {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let child = Command::new(venv_bin("moto_server"))
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let deadline = Instant::now() + Duration::from_secs(60);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "moto_server did not start on port {port}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        S3Server {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        }
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ENDPOINT_URL", self.endpoint.as_str()),
            ("AWS_ACCESS_KEY_ID", "testing"),
            ("AWS_SECRET_ACCESS_KEY", "testing"),
            ("AWS_REGION", "us-east-1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    /// Runs a boto3 snippet against this server (`s3` is the client).
    fn boto(&self, code: &str) -> String {
        let script = format!("import boto3, sys\ns3 = boto3.client('s3')\n{code}\n");
        let out = Command::new(venv_bin("python"))
            .args(["-c", &script])
            .envs(self.env())
            .output()
            .expect("run python");
        assert!(
            out.status.success(),
            "boto3: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_lake_in_a_bucket_imports_from_s3_branches_and_merges() {
    let s3 = S3Server::start();
    s3.boto("s3.create_bucket(Bucket='lake')\ns3.create_bucket(Bucket='src')");
    for f in ["trips_2024_01.csv", "trips_2024_02.csv", "zones.jsonl"] {
        s3.boto(&format!("s3.upload_file('{}', 'src', 'raw/{f}')", data(f)));
    }
    let mut l = Lake::new();
    l.env = s3.env();
    let info = l.json(&["lake", "init", "--warehouse", "s3://lake/wh"]);
    assert_eq!(info["warehouse"], "s3://lake/wh");

    l.ok(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        "s3://src/raw/trips_2024_01.csv",
    ]);
    let r = l.json(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        "s3://src/raw/trips_2024_01.csv",
    ]);
    assert_eq!(r["report"]["rows"], 2000);
    l.load("zones", &data("zones.jsonl"), &[]);
    // JSON Lines and the checks before a read, on objects too.
    l.load("zones_s3", "s3://src/raw/zones.jsonl", &[]);
    assert_eq!(l.count("SELECT count(*) FROM zones_s3", &[]), 40);
    let open = l.write("open.csv", "a,b\n1,\"x\n2,3\n");
    s3.boto(&format!("s3.upload_file('{open}', 'src', 'bad/open.csv')"));
    let e = l.err(&[
        "table",
        "create",
        "open",
        "--search-uri",
        "s3://src/bad/open.csv",
    ]);
    assert!(e.contains("s3://src/bad/open.csv: line 2:"), "{e}");
    l.ok(&["branch", "create", "dev"]);
    let r = l.json(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        "s3://src/raw/trips_*.csv",
        "-b",
        "dev",
    ]);
    assert_eq!(
        r["report"]["imported"].as_array().unwrap().len(),
        1,
        "January was already imported"
    );
    assert_eq!(r["report"]["duplicates"].as_array().unwrap().len(), 1);
    assert_eq!(l.count("SELECT count(*) FROM trips", &["-r", "dev"]), 4000);
    assert_eq!(l.count("SELECT count(*) FROM trips", &["-r", "main"]), 2000);
    let joined = l.count(
        "SELECT count(*) FROM trips t JOIN zones z ON t.pickup_zone = z.zone_id",
        &["-r", "dev"],
    );
    assert_eq!(joined, 4000);
    l.ok(&["branch", "merge", "dev"]);
    assert_eq!(l.count("SELECT count(tip) FROM trips", &[]), 2000);

    // the tables live in the bucket, not on local disk
    let keys = s3
        .boto("r = s3.list_objects_v2(Bucket='lake', Prefix='wh/default/')\nprint(r['KeyCount'])");
    assert!(
        keys.trim().parse::<u32>().unwrap() > 5,
        "objects under wh/default/: {keys}"
    );
    assert!(!l.path().join("warehouse").exists());
    let loc = l.json(&["table", "get", "trips"])["metadata_location"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(loc.starts_with("s3://lake/wh/default/trips_"), "{loc}");

    // errors name the thing
    let e = l.err(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        "s3://src/nothing/*.csv",
    ]);
    assert!(e.contains("no files match"), "{e}");
    let e = l.err(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        "s3://no-such-bucket/x.csv",
    ]);
    assert!(e.contains("s3://no-such-bucket"), "{e}");
}

#[test]
fn a_warehouse_in_a_missing_bucket_fails_cleanly() {
    let s3 = S3Server::start();
    let mut l = Lake::new();
    l.env = s3.env();
    l.ok(&["lake", "init", "--warehouse", "s3://nobucket/wh"]);
    let head = l.head("main");
    let e = l.err(&[
        "table",
        "create",
        "zones",
        "--search-uri",
        &data("zones.jsonl"),
    ]);
    assert!(e.contains("nobucket") || e.contains("NoSuchBucket"), "{e}");
    assert_eq!(l.head("main"), head, "nothing committed");
    l.err(&["lake", "init", "--warehouse", "s3://BAD_NAME/x"]);
}

/// On a server whose tenants share a bucket (`s3://lake/ta`, `s3://lake/tb`), tenant A names
/// B's objects with `//`, a glob or the bucket's root: each answers that there are no such
/// files, and A's table gets none of B's rows.
#[test]
fn a_tenant_reads_no_other_tenants_objects_by_any_key_form() {
    let s3 = S3Server::start();
    s3.boto("s3.create_bucket(Bucket='lake')\ns3.create_bucket(Bucket='src')");
    s3.boto(&format!(
        "s3.upload_file('{}', 'src', 'raw/jan.csv')",
        data("trips_2024_01.csv")
    ));
    let admin_dir = Lake::new();
    let meta = format!("sqlite:{}", admin_dir.file("server").display());
    let admin = |args: &[&str]| {
        let mut a = vec!["admin"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["--metastore", &meta]);
        admin_dir.ok(&a).trim().to_string()
    };
    let mut keys = Vec::new();
    for t in ["ta", "tb"] {
        admin(&[
            "tenant",
            "create",
            t,
            "--warehouse",
            &format!("s3://lake/{t}"),
        ]);
        admin(&["user", "create", "tester", "--tenant", t, "--admin"]);
        keys.push(admin(&[
            "key", "create", "--tenant", t, "--user", "tester", "--scope", "admin",
        ]));
    }
    let s3_env = s3.env();
    let env: Vec<(&str, String)> = s3_env
        .iter()
        .map(|(k, v)| (k.as_str(), v.clone()))
        .collect();
    let server = crate::server::serve_with_env(&meta, &[], &env);
    let tenant = |key: &str| {
        let mut l = Lake::new();
        l.env = s3.env();
        l.env
            .push(("LAKEPLAN_API_ENDPOINT".into(), server.base.clone()));
        l.env.push(("LAKEPLAN_API_KEY".into(), key.to_string()));
        l.env
            .push(("HOME".into(), l.file("home").display().to_string()));
        l
    };
    let (a, b) = (tenant(&keys[0]), tenant(&keys[1]));
    b.ok(&[
        "table",
        "create",
        "trips",
        "--search-uri",
        "s3://src/raw/jan.csv",
    ]);
    b.ok(&[
        "table",
        "import",
        "trips",
        "--search-uri",
        "s3://src/raw/jan.csv",
    ]);
    let listed = s3.boto(
        "r = s3.list_objects_v2(Bucket='lake', Prefix='tb/')\n\
         print([o['Key'] for o in r['Contents'] if o['Key'].endswith('.parquet')][0])",
    );
    let b_file = listed.trim();
    assert!(b_file.starts_with("tb/default/trips_"), "{b_file}");
    a.ok(&[
        "table",
        "create",
        "mine",
        "--search-uri",
        "s3://src/raw/jan.csv",
    ]);
    for uri in [
        format!("s3://lake//{b_file}"),
        format!("s3://lake/{}", b_file.replacen('/', "//", 2)),
        "s3://lake//tb".to_string(),
        "s3://lake/tb//default".to_string(),
        "s3://lake/t*/**/*.parquet".to_string(),
        "s3://lake/t[b]/**".to_string(),
        "s3://lake/**/*.parquet".to_string(),
    ] {
        for verb in [
            ["table", "import", "mine"],
            ["table", "create-plan", "stolen"],
            ["table", "create", "stolen"],
        ] {
            let mut args = verb.to_vec();
            args.extend_from_slice(&["--search-uri", &uri]);
            let e = a.err(&args);
            assert!(e.contains("no such files"), "{uri}: {e}");
            assert!(!e.replace(&uri, "").contains("tb/"), "{uri}: {e}");
        }
    }
    assert_eq!(a.count("SELECT count(*) FROM mine", &[]), 0);
}

/// `bauplan.store` with the warehouse in a bucket: saved objects are uploaded there and copied
/// into the run's shared memory for the functions that may load them.
#[test]
fn saved_objects_live_in_the_bucket() {
    let s3 = S3Server::start();
    s3.boto("s3.create_bucket(Bucket='lake')");
    let mut l = Lake::new();
    l.env = s3.env();
    l.env.push((
        "LAKEPLAN_ENV_CACHE".to_string(),
        crate::pipeline::env_cache(),
    ));
    l.ok(&["lake", "init", "--warehouse", "s3://lake/wh"]);
    crate::pipeline::load_inputs(&l);
    let train = crate::pipeline::project(&l, "train", &[("models.py", crate::store::TRAIN)]);
    let predict = crate::pipeline::project(&l, "predict", &[("models.py", crate::store::PREDICT)]);
    crate::pipeline::run_ok(&l, &train, &["-n", "default"]);
    let keys = s3.boto(
        "for o in s3.list_objects_v2(Bucket='lake', Prefix='wh/.lakeplan/objects/').get('Contents', []):\n    print(o['Key'])",
    );
    assert_eq!(keys.lines().count(), 2, "{keys}");
    crate::pipeline::run_ok(&l, &predict, &["-n", "default"]);
    let mean = l.rows("SELECT avg(fare) AS m FROM trips", &[])[0]["m"]
        .as_f64()
        .unwrap();
    let got = l.rows("SELECT mean FROM predicted", &[])[0]["mean"]
        .as_f64()
        .unwrap();
    assert!((got - mean).abs() < 1e-9, "{got} vs {mean}");
}
