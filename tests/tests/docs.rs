//! The docs stand on their own: every relative link in every Markdown file of the repository
//! resolves to a file inside it (and its `#anchor` to a heading or an `id` there), and every
//! behaviour rule ID a test cites (`B-ROUTE-3`) is defined in docs/behaviour.md, and the
//! README's Layout table names only paths that exist and has a row for every top-level folder.
//! Plain file reads: no network, no processes.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Component, Path, PathBuf};

use portcullis_crds::reference::github_slug;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("tests/ is inside the workspace").to_path_buf()
}

/// Files under `dir` whose name ends with one of `exts`, skipping build output, dependencies
/// and hidden folders (what a fresh clone does not hold).
fn files(dir: &Path, exts: &[&str], out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if path.is_dir() {
            if !(name.starts_with('.') || name == "target" || name == "node_modules" || name == "results") {
                files(&path, exts, out);
            }
        } else if exts.iter().any(|e| name.ends_with(e)) {
            out.push(path);
        }
    }
}

/// A Markdown file's lines outside fenced code blocks, with inline code spans blanked out, as
/// `(line number, text)`.
fn prose_lines(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fenced = false;
    for (i, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut kept = String::new();
        let mut in_code = false;
        for c in line.chars() {
            if c == '`' {
                in_code = !in_code;
            } else if !in_code {
                kept.push(c);
            }
        }
        out.push((i + 1, kept));
    }
    out
}

/// The anchors a Markdown file defines: GitHub's heading slugs (a repeated heading gets `-1`,
/// `-2`, …) and explicit `id="…"` / `name="…"` attributes.
fn anchors(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        if let Some(heading) = line.strip_prefix('#') {
            let heading = heading.trim_start_matches('#');
            if heading.starts_with(' ') {
                let slug = github_slug(heading.trim().trim_end_matches('#'));
                let n = seen.entry(slug.clone()).or_insert(0);
                out.insert(if *n == 0 { slug.clone() } else { format!("{slug}-{n}") });
                *n += 1;
            }
        }
        for attr in ["id=\"", "name=\""] {
            let mut rest = line;
            while let Some(at) = rest.find(attr) {
                rest = &rest[at + attr.len()..];
                if let Some(end) = rest.find('"') {
                    out.insert(rest[..end].to_owned());
                }
            }
        }
    }
    out
}

/// The targets of inline links and images (`[text](target)`) on one line of prose.
fn link_targets(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find(')').unwrap_or(rest.len());
        // `<…>` allows spaces in the target; otherwise a space starts the title.
        let target = match rest.strip_prefix('<') {
            Some(inner) => inner.split('>').next().unwrap_or_default(),
            None => rest[..end].split_whitespace().next().unwrap_or_default(),
        };
        out.push(target.to_owned());
        rest = &rest[end..];
    }
    out
}

/// `path` with `.` and `..` removed lexically (the file need not exist).
fn normalise(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::CurDir => {}
            c => out.push(c),
        }
    }
    out
}

#[test]
fn every_relative_link_in_every_markdown_file_resolves_inside_the_repository() {
    let root = repo_root();
    let mut mds = Vec::new();
    files(&root, &[".md"], &mut mds);
    assert!(mds.len() >= 8, "found only {} Markdown files under {}", mds.len(), root.display());
    let mut checked = 0;
    let mut problems = Vec::new();
    for md in &mds {
        let text = std::fs::read_to_string(md).expect("read");
        let rel = md.strip_prefix(&root).expect("inside").display().to_string();
        for (line, prose) in prose_lines(&text) {
            for target in link_targets(&prose) {
                if target.is_empty() || target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (file, anchor) = match target.split_once('#') {
                    Some((f, a)) => (f, Some(a)),
                    None => (target.as_str(), None),
                };
                let dest =
                    if file.is_empty() { md.clone() } else { normalise(&md.parent().expect("a folder").join(file)) };
                if !dest.starts_with(&root) {
                    problems.push(format!("{rel}:{line}: {target} points outside the repository"));
                    continue;
                }
                if !dest.exists() {
                    problems.push(format!("{rel}:{line}: {target}: no such file"));
                    continue;
                }
                if let Some(anchor) = anchor {
                    let have = std::fs::read_to_string(&dest).map(|t| anchors(&t)).unwrap_or_default();
                    if !have.contains(anchor) {
                        problems.push(format!("{rel}:{line}: {target}: no heading or id #{anchor} there"));
                    }
                }
            }
        }
    }
    assert!(problems.is_empty(), "{} broken links:\n{}", problems.len(), problems.join("\n"));
    assert!(checked >= 50, "only {checked} relative links checked: is the link scanner still finding them?");
}

/// The rule IDs (`B-ROUTE-3`) in a text.
fn rule_ids(text: &str) -> Vec<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while let Some(at) = text[i..].find("B-") {
        let start = i + at;
        i = start + 2;
        if start > 0
            && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'-' || bytes[start - 1] == b'_')
        {
            continue;
        }
        let area_len = bytes[i..].iter().take_while(|b| b.is_ascii_uppercase()).count();
        if area_len == 0 || bytes.get(i + area_len) != Some(&b'-') {
            continue;
        }
        let digits = bytes[i + area_len + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 {
            continue;
        }
        let end = i + area_len + 1 + digits;
        out.push(text[start..end].to_owned());
        i = end;
    }
    out
}

#[test]
fn every_rule_id_a_test_cites_is_defined_in_behaviour_md() {
    let root = repo_root();
    let behaviour = std::fs::read_to_string(root.join("docs/behaviour.md")).expect("docs/behaviour.md");
    let defined: Vec<String> = anchors(&behaviour).into_iter().filter(|a| rule_ids(a).first() == Some(a)).collect();
    assert!(defined.len() >= 50, "docs/behaviour.md defines only {} rule IDs", defined.len());
    for id in &defined {
        assert!(
            behaviour.contains(&format!("<a id=\"{id}\"></a>**{id}**")),
            "{id}: its anchor and its bold ID must go together"
        );
    }

    let mut sources = Vec::new();
    for dir in ["tests", "sidecar", "operator", "crds", "kubectl-portcullis"] {
        files(&root.join(dir), &[".rs", ".py"], &mut sources);
    }
    let mut cited: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for source in &sources {
        let text = std::fs::read_to_string(source).expect("read");
        let rel = source.strip_prefix(&root).expect("inside").display().to_string();
        for id in rule_ids(&text) {
            cited.entry(id).or_default().push(rel.clone());
        }
    }
    // This file's own examples are not citations.
    let this = "tests/tests/docs.rs".to_owned();
    cited.retain(|_, files| {
        files.retain(|f| *f != this);
        !files.is_empty()
    });
    let unknown: Vec<String> = cited
        .iter()
        .filter(|(id, _)| !defined.contains(id))
        .map(|(id, files)| format!("{id} (cited in {})", files.join(", ")))
        .collect();
    assert!(unknown.is_empty(), "tests cite rule IDs that docs/behaviour.md does not define: {}", unknown.join("; "));
    assert!(!cited.is_empty(), "no test cites a rule ID");

    let uncited: Vec<&String> = defined.iter().filter(|id| !cited.contains_key(*id)).collect();
    eprintln!(
        "{} of {} rules are cited by a test; cited nowhere: {uncited:?}",
        defined.len() - uncited.len(),
        defined.len()
    );
}

#[test]
fn the_scanners_find_what_they_should() {
    assert_eq!(rule_ids("see B-ROUTE-3, B-CORS-10; not XB-ROUTE-1 nor B-ROUTE- nor B-x-1"), ["B-ROUTE-3", "B-CORS-10"]);
    assert_eq!(
        link_targets("a [x](docs/a.md#b) and ![i](img.png \"t\") and [y](<c d.md>)"),
        ["docs/a.md#b", "img.png", "c d.md"]
    );
    let md = "# Title\n## A: b — c\n```\n# not a heading\n```\n## Title\n- <a id=\"B-X-1\"></a>**B-X-1**\n";
    let want: BTreeSet<String> = ["title", "a-b--c", "title-1", "B-X-1"].into_iter().map(String::from).collect();
    assert_eq!(anchors(md), want);
    assert_eq!(prose_lines("a `[x](y)` b\n```\n[z](w)\n```\n"), [(1, "a  b".to_owned())]);
}

/// The README's "Layout" table, as `(folder, paths it names)`: every code span of a row that
/// looks like a path (a `/`, or a file ending), the arguments of a command cut off.
fn layout_rows(readme: &str) -> Vec<(String, Vec<String>)> {
    let start = readme.find("\n## Layout").expect("the README has a Layout section");
    let table = &readme[start..];
    let table = &table[..table[1..].find("\n## ").map_or(table.len(), |e| e + 1)];
    table
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|row| {
            let mut cells = row.split('|').skip(1);
            let folder = cells.next().unwrap_or_default().trim().trim_matches('`').to_owned();
            let what = cells.next().unwrap_or_default();
            let paths = what
                .split('`')
                .skip(1)
                .step_by(2)
                .filter_map(|span| span.split([' ', '(']).next())
                .filter(|p| p.contains('/') || [".rs", ".md", ".yaml", ".py", ".sh"].iter().any(|e| p.ends_with(e)))
                .filter(|p| !p.starts_with("http"))
                .map(str::to_owned)
                .collect();
            (folder, paths)
        })
        .collect()
}

/// The Layout table matches the tree: every path a row names exists (from the repository root,
/// the row's folder, or that folder's `src/`), and every top-level folder of a clone has a row.
#[test]
fn the_readme_layout_table_names_what_is_in_the_tree() {
    let root = repo_root();
    let readme = std::fs::read_to_string(root.join("README.md")).expect("read README.md");
    let rows = layout_rows(&readme);
    assert!(rows.len() >= 10 && rows.iter().any(|(f, p)| f == "sidecar/" && p.len() > 10), "rows: {rows:?}");
    let mut missing = Vec::new();
    for (folder, paths) in &rows {
        for p in paths {
            let p = p.trim_end_matches('/');
            let found = [root.join(p), root.join(folder).join(p), root.join(folder).join("src").join(p)]
                .iter()
                .any(|c| c.exists());
            if !found {
                missing.push(format!("{folder}: {p}"));
            }
        }
    }
    assert!(missing.is_empty(), "the README's Layout table names paths that do not exist: {missing:?}");
    let named: Vec<&str> = rows.iter().map(|(f, _)| f.as_str()).collect();
    let top: BTreeSet<String> = std::fs::read_dir(&root)
        .expect("read the repository root")
        .flatten()
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        // Hidden folders are a checkout's or an editor's (`.ci/` has its row all the same).
        .filter(|d| !d.starts_with('.') && d != "target")
        .collect();
    let unnamed: Vec<&String> =
        top.iter().filter(|d| !named.iter().any(|f| f.split('/').next() == Some(d.as_str()))).collect();
    assert!(unnamed.is_empty(), "top-level folders without a row in the README's Layout table: {unnamed:?}");
}
