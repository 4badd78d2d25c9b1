//! The layering of design.md, checked on the real dependency graph (`cargo metadata`), so a
//! `Cargo.toml` that breaks it fails the test suite:
//!
//! - `qilin-shm` depends on no crate of ours (its tests on the test kit); `qilin-market` on nothing of ours but `qilin-shm`;
//! - only the benches, these end-to-end tests, the fuzz targets and the CTP stand-in's driver depend
//!   on `qilin-core`;
//! - nothing depends on `qilin-tools` (the operator CLI is a leaf), so the sidecars do not either;
//! - `qilin-testkit` (what the process tests share) depends on nothing of ours but `qilin-shm`;
//! - the sidecars and the tools talk to the core only through the segment and the control socket.
//!
//! Every kind of dependency counts (normal, build and dev). `rules_catch_a_sidecar_that_links_the_core`
//! shows the check failing on a graph that breaks the rules.

use std::{collections::BTreeMap, process::Command};

use serde_json::Value;

/// Which crates of ours each crate may depend on (`None`: any).
fn allowed(krate: &str) -> Option<&'static [&'static str]> {
    Some(match krate {
        // Its tests use the test kit (a dev-dependency that depends on it: cargo allows that cycle).
        "qilin-shm" => &["qilin-testkit"],
        "qilin-market" => &["qilin-shm"],
        "qilin-journal" => &["qilin-shm", "qilin-market"],
        "qilin-audit" => &["qilin-shm", "qilin-market"],
        "qilin-testkit" => &["qilin-shm"],
        "qilin-core" | "qilin-sidecar" | "qilin-tools" => {
            &["qilin-shm", "qilin-market", "qilin-journal", "qilin-audit", "qilin-testkit"]
        }
        // The benches, the end-to-end tests and the fuzz targets measure and exercise everything.
        // So does the CTP stand-in's driver (it plays the simulator's ticks to the stand-in).
        "qilin-benches" | "qilin-e2e" | "qilin-fuzz" | "qilin-ctp-standin" => return None,
        _ => &[],
    })
}

/// Every workspace crate and the crates of ours (path dependencies) it depends on, any kind.
fn graph(metadata: &Value) -> BTreeMap<String, Vec<String>> {
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["source"].is_null())
        .map(|p| {
            let deps = p["dependencies"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|d| d.get("path").is_some())
                .map(|d| d["name"].as_str().unwrap().to_owned())
                .collect();
            (p["name"].as_str().unwrap().to_owned(), deps)
        })
        .collect()
}

/// Every dependency the rules forbid, as `"a → b"`.
fn violations(graph: &BTreeMap<String, Vec<String>>) -> Vec<String> {
    let mut found = Vec::new();
    for (krate, deps) in graph {
        let Some(allowed) = allowed(krate) else { continue };
        for dep in deps {
            if !allowed.contains(&dep.as_str()) {
                found.push(format!("{krate} → {dep}"));
            }
        }
    }
    found
}

fn metadata(manifest: &str) -> Value {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--no-deps", "--manifest-path"])
        .arg(format!("{root}/{manifest}"))
        .output()
        .expect("running cargo metadata");
    assert!(out.status.success(), "cargo metadata: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_workspace_keeps_its_layers() {
    let graph = graph(&metadata("Cargo.toml"));
    for krate in ["qilin-shm", "qilin-market", "qilin-core", "qilin-sidecar", "qilin-tools"] {
        assert!(graph.contains_key(krate), "{krate} is not in the workspace: {graph:?}");
    }
    assert_eq!(violations(&graph), Vec::<String>::new(), "layering broken (design.md, 'Layout of the repository')");
    let fuzz = graph_of_fuzz();
    assert_eq!(violations(&fuzz), Vec::<String>::new());
}

/// The fuzz targets are their own workspace; their crate may depend on anything, but the crates it
/// pulls in are the workspace's own and keep their rules (checked above).
fn graph_of_fuzz() -> BTreeMap<String, Vec<String>> {
    graph(&metadata("fuzz/Cargo.toml"))
}

#[test]
fn rules_catch_a_sidecar_that_links_the_core() {
    let broken: BTreeMap<String, Vec<String>> = [
        ("qilin-shm", vec!["qilin-market"]),
        ("qilin-market", vec!["qilin-shm"]),
        ("qilin-sidecar", vec!["qilin-shm", "qilin-market", "qilin-tools", "qilin-core"]),
        ("qilin-tools", vec!["qilin-core"]),
        ("qilin-core", vec!["qilin-market"]),
        ("qilin-benches", vec!["qilin-core", "qilin-tools"]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(
        violations(&broken),
        [
            "qilin-shm → qilin-market",
            "qilin-sidecar → qilin-tools",
            "qilin-sidecar → qilin-core",
            "qilin-tools → qilin-core"
        ]
    );
}
