use std::time::{Duration, Instant};

use crate::util::Lake;

/// A small deterministic generator for kill delays (no seed from the clock: reruns repeat).
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 33) % bound.max(1)
    }
}

/// Kills `lakeplan table import` with SIGKILL at random points; after each kill the catalog
/// opens, every ref resolves, and the table holds either the old or the new rows — never a
/// partial import.
#[test]
fn killing_an_import_at_any_point_leaves_old_or_new_state() {
    let l = Lake::new();
    let body: String = (0..40_000)
        .map(|i| format!("{i},v{},{}.5\n", i % 97, i % 13))
        .collect();
    let file = l.write("big.csv", &format!("id,tag,x\n{body}"));
    l.ok(&["table", "create", "big", "--search-uri", &file]);
    let t0 = Instant::now();
    l.ok(&["table", "import", "big", "--search-uri", &file]);
    let full = t0.elapsed().as_millis() as u64;
    let mut rows = l.count("SELECT count(*) FROM big", &[]);
    assert_eq!(rows, 40_000);

    let mut rng = Lcg(42);
    let (mut killed, mut finished) = (0, 0);
    for trial in 0..24 {
        let delay = rng.next(full + full / 2);
        let mut child = l
            .cmd(&[
                "table",
                "import",
                "big",
                "--search-uri",
                &file,
                "--import-duplicate-files",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawn import");
        std::thread::sleep(Duration::from_millis(delay));
        let done = child.try_wait().expect("poll").is_some();
        if !done {
            child.kill().expect("kill");
            killed += 1;
        } else {
            finished += 1;
        }
        child.wait().expect("reap");

        for b in l.json(&["branch", "ls"]).as_array().expect("branches") {
            let name = b["name"].as_str().expect("name");
            l.ok(&["branch", "get", name]);
        }
        let now = l.count("SELECT count(*) FROM big", &[]);
        assert!(
            now == rows || now == rows + 40_000,
            "trial {trial} (kill after {delay} ms): {now} rows, expected {rows} or {}",
            rows + 40_000
        );
        let sum = l.count("SELECT sum(id) FROM big", &[]);
        assert_eq!(
            sum as i128,
            (now as i128 / 40_000) * (39_999 * 40_000 / 2),
            "trial {trial}"
        );
        rows = now;
    }
    assert!(
        killed >= 10,
        "most trials must kill mid-way (killed {killed}, finished {finished})"
    );
}
