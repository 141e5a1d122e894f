//! A test, not code: the modules of `http` import each other without a circle, so each can be
//! read (and changed) knowing only the ones below it. Parses the `super::m` and `crate::http::m`
//! paths of every module's non-test source and fails naming the circle it finds.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `module → modules of http it names`, from the sources in `dir`.
fn edges(dir: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let sources: BTreeMap<String, String> = std::fs::read_dir(dir)
        .expect("read sidecar/src/http")
        .filter_map(|e| {
            let path = e.ok()?.path();
            let name = path.file_stem()?.to_str()?.to_owned();
            let ok = path.extension().is_some_and(|x| x == "rs") && name != "mod" && name != "layers";
            ok.then(|| (name, std::fs::read_to_string(&path).expect("read module")))
        })
        .collect();
    let modules: BTreeSet<&str> = sources.keys().map(String::as_str).collect();
    sources
        .iter()
        .map(|(name, text)| {
            // Tests sit at the end of a file (house style) and may reach anywhere; comments
            // (doc links) are not imports.
            let code: String = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .map(|l| l.split("//").next().unwrap_or_default())
                .collect::<Vec<_>>()
                .join("\n");
            let mut named = BTreeSet::new();
            for prefix in ["super::", "crate::http::"] {
                for (at, _) in code.match_indices(prefix) {
                    let rest = &code[at + prefix.len()..];
                    let items = match rest.strip_prefix('{') {
                        Some(group) => group.split('}').next().unwrap_or_default(),
                        None => rest,
                    };
                    for item in items.split(',') {
                        let m: String = item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                        if modules.contains(m.as_str()) && m != *name {
                            named.insert(m);
                        }
                    }
                }
            }
            (name.clone(), named)
        })
        .collect()
}

/// A circle in `edges`, as the path that closes it.
fn circle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        m: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == m) {
            let mut c = path[i..].to_vec();
            c.push(m.to_owned());
            return Some(c);
        }
        if done.contains(m) {
            return None;
        }
        path.push(m.to_owned());
        for next in edges.get(m).into_iter().flatten() {
            if let Some(c) = visit(next, edges, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(m.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|m| visit(m, edges, &mut Vec::new(), &mut done))
}

#[test]
fn http_modules_import_each_other_without_a_circle() {
    let edges = edges(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/http"));
    assert!(edges.len() >= 10, "the parser found the modules: {edges:?}");
    assert!(edges["pipeline"].contains("phases"), "the parser reads `use super::…`: {edges:?}");
    if let Some(c) = circle(&edges) {
        panic!("sidecar/src/http imports in a circle: {}", c.join(" → "));
    }
}

#[test]
fn a_circle_is_found() {
    let e = |pairs: &[(&str, &str)]| {
        let mut m: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (a, b) in pairs {
            m.entry((*a).to_owned()).or_default().insert((*b).to_owned());
            m.entry((*b).to_owned()).or_default();
        }
        m
    };
    assert_eq!(circle(&e(&[("a", "b"), ("b", "c")])), None);
    assert_eq!(
        circle(&e(&[("a", "b"), ("b", "c"), ("c", "a")])),
        Some(vec!["a".into(), "b".into(), "c".into(), "a".into()])
    );
}
