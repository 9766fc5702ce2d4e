//! The library's modules form layers: no import cycle between top-level modules, and the
//! ground floor and the stores use nothing above them.
//!
//! Each top-level module is `src/NAME.rs` or `src/NAME/` with every file its `mod`
//! declarations reach. A module uses another where its text names `crate::OTHER` (or reaches
//! the crate root through `super::`), in code or in a doc link, outside `#[cfg(test)]`
//! modules: a doc link is a dependency a reader follows too. `pub use` counts where it is
//! written, so a re-export cannot hide a cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What the lowest modules may use (every module not listed may use anything that keeps the
/// graph free of cycles). The ground floor: byte paths, units, the shared vocabulary, the
/// names synk owns in trees, atomic writes, what the host itself says (home, random bytes). Above it, the wire protocol describes frames and
/// the stores store; the decision and the scan are pure of connections; the report words
/// what it is told, and knows nothing of peers, copies or runs.
const RULES: &[(&str, &[&str])] = &[
    ("paths", &[]),
    ("units", &[]),
    ("os", &[]),
    ("names", &["paths", "units"]),
    ("model", &["paths"]),
    ("atomic", &["names", "os"]),
    ("beneath", &["names", "os"]),
    ("exclude", &["paths"]),
    ("extra", &["model", "paths"]),
    ("cache", &["beneath", "extra", "model", "paths"]),
    (
        "scan",
        &["beneath", "cache", "exclude", "model", "names", "paths"],
    ),
    ("proto", &["model", "names", "paths"]),
    ("state", &["atomic", "model", "os", "paths", "units"]),
    ("versions", &["atomic", "beneath", "model", "os", "paths"]),
    ("plan", &["model", "names", "paths"]),
    ("report", &["model", "paths", "plan"]),
    ("config", &["atomic", "model", "os", "paths", "units"]),
];

/// One use of a module by another, where it is written.
#[derive(Debug, Clone)]
struct Use {
    file: PathBuf,
    line: usize,
}

/// The module graph: for each module, the modules it uses and the first place it does.
type Graph = BTreeMap<String, BTreeMap<String, Use>>;

/// The source with `#[cfg(test)]` modules and the insides of string and char literals blanked
/// out (newlines kept, so line numbers hold; comments stay: doc links count), and the names
/// of child modules declared outside test modules (`mod NAME;`), each with whether it is a
/// test module.
fn strip_tests(src: &str) -> (String, Vec<(String, bool)>) {
    let chars: Vec<char> = src.chars().collect();
    let class = classify(&chars);
    let code: Vec<bool> = class.iter().map(|c| *c == Class::Code).collect();
    let mut keep: Vec<bool> = class.iter().map(|c| *c != Class::Literal).collect();
    let mut children = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        if code[i] && starts_with(&chars, i, "#[cfg(test)]") {
            let start = i;
            let j = skip_attrs_and_space(&chars, i + "#[cfg(test)]".len());
            if let Some((name, after)) = mod_decl(&chars, j) {
                if chars.get(after) == Some(&';') {
                    children.push((name, true));
                    i = after + 1;
                    continue;
                }
                if chars.get(after) == Some(&'{') {
                    let end = matching_brace(&chars, &code, after);
                    for k in keep.iter_mut().take(end + 1).skip(start) {
                        *k = false;
                    }
                    i = end + 1;
                    continue;
                }
            }
            i = j;
            continue;
        }
        if code[i] && (i == 0 || !is_ident(chars[i - 1])) {
            if let Some((name, after)) = mod_decl(&chars, i) {
                if chars.get(after) == Some(&';') {
                    children.push((name, false));
                }
                i = after;
                continue;
            }
        }
        i += 1;
    }
    let text = chars
        .iter()
        .zip(&keep)
        .map(|(c, k)| if *k || *c == '\n' { *c } else { ' ' })
        .collect();
    (text, children)
}

fn starts_with(chars: &[char], at: usize, s: &str) -> bool {
    s.chars()
        .enumerate()
        .all(|(k, c)| chars.get(at + k) == Some(&c))
}

fn is_ident(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

fn skip_space(chars: &[char], mut j: usize) -> usize {
    while chars.get(j).is_some_and(|c| c.is_whitespace()) {
        j += 1;
    }
    j
}

/// Past whitespace and further attributes (`#[…]`).
fn skip_attrs_and_space(chars: &[char], mut j: usize) -> usize {
    loop {
        j = skip_space(chars, j);
        if starts_with(chars, j, "#[") {
            let mut depth = 0;
            while j < chars.len() {
                match chars[j] {
                    '[' => depth += 1,
                    ']' => {
                        depth -= 1;
                        if depth == 0 {
                            j += 1;
                            break;
                        }
                    }
                    _ => {}
                }
                j += 1;
            }
        } else {
            return j;
        }
    }
}

/// Past `pub`, `pub(…)` and whitespace, if there is a `pub`.
fn skip_visibility(chars: &[char], j: usize) -> Option<usize> {
    if !starts_with(chars, j, "pub") || chars.get(j + 3).is_some_and(|c| is_ident(*c)) {
        return None;
    }
    let mut k = skip_space(chars, j + 3);
    if chars.get(k) == Some(&'(') {
        while k < chars.len() && chars[k] != ')' {
            k += 1;
        }
        k += 1;
    }
    Some(skip_space(chars, k))
}

/// `[pub …] mod NAME` at `j`: the name, and the position of what follows it (`;` or `{`).
fn mod_decl(chars: &[char], j: usize) -> Option<(String, usize)> {
    let j = skip_visibility(chars, j).unwrap_or(j);
    if !starts_with(chars, j, "mod") || !chars.get(j + 3).is_some_and(|c| c.is_whitespace()) {
        return None;
    }
    let mut k = skip_space(chars, j + 3);
    let start = k;
    while chars.get(k).is_some_and(|c| is_ident(*c)) {
        k += 1;
    }
    if k == start {
        return None;
    }
    let name: String = chars[start..k].iter().collect();
    Some((name, skip_space(chars, k)))
}

/// What a character of the source is part of.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Code,
    Comment,
    /// A string or char literal.
    Literal,
}

/// Classifies every character of a Rust source.
fn classify(chars: &[char]) -> Vec<Class> {
    let mut class = vec![Class::Code; chars.len()];
    let mark = |class: &mut Vec<Class>, from: usize, to: usize, c: Class| {
        for x in class.iter_mut().take(to.min(chars.len())).skip(from) {
            *x = c;
        }
    };
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let word_start = i == 0 || !is_ident(chars[i - 1]);
        // Where a raw string's hashes start, if one starts here: r"…", r#"…"#, br#"…"#.
        let raw = match (c, next) {
            ('r', _) if word_start => Some(i + 1),
            ('b', Some('r')) if word_start => Some(i + 2),
            _ => None,
        }
        .filter(|r| {
            let mut k = *r;
            while chars.get(k) == Some(&'#') {
                k += 1;
            }
            chars.get(k) == Some(&'"')
        });
        if c == '/' && next == Some('/') {
            let end = (i..chars.len())
                .find(|k| chars[*k] == '\n')
                .unwrap_or(chars.len());
            mark(&mut class, i, end, Class::Comment);
            i = end;
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            let mut k = i;
            while k < chars.len() {
                if starts_with(chars, k, "/*") {
                    depth += 1;
                    k += 2;
                } else if starts_with(chars, k, "*/") {
                    depth -= 1;
                    k += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    k += 1;
                }
            }
            mark(&mut class, i, k, Class::Comment);
            i = k;
        } else if let Some(r) = raw {
            let mut k = r;
            while chars.get(k) == Some(&'#') {
                k += 1;
            }
            let close: String = std::iter::once('"')
                .chain(std::iter::repeat_n('#', k - r))
                .collect();
            k += 1;
            while k < chars.len() && !starts_with(chars, k, &close) {
                k += 1;
            }
            let end = k + close.chars().count();
            mark(&mut class, i, end, Class::Literal);
            i = end;
        } else if c == '"' {
            let mut k = i + 1;
            while k < chars.len() && chars[k] != '"' {
                if chars[k] == '\\' {
                    k += 1;
                }
                k += 1;
            }
            mark(&mut class, i, k + 1, Class::Literal);
            i = k + 1;
        } else if c == '\'' {
            // A char literal ('x', '\n', '\''), else a lifetime or a label.
            let end = if next == Some('\\') {
                (i + 3..chars.len()).find(|k| chars[*k] == '\'')
            } else if chars.get(i + 2) == Some(&'\'') {
                Some(i + 2)
            } else {
                None
            };
            match end {
                Some(k) => {
                    mark(&mut class, i, k + 1, Class::Literal);
                    i = k + 1;
                }
                None => i += 1,
            }
        } else {
            i += 1;
        }
    }
    class
}

/// The position of the brace closing the one at `open`, counting code braces only.
fn matching_brace(chars: &[char], code: &[bool], open: usize) -> usize {
    let mut depth = 0;
    for k in open..chars.len() {
        if !code[k] {
            continue;
        }
        match chars[k] {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return k;
                }
            }
            _ => {}
        }
    }
    chars.len() - 1
}

/// The top-level modules a file's text names, with the line of the first mention of each.
/// `depth`: how many `super::` lead from this file's module to the crate root.
fn mentions(text: &str, depth: usize) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let line_of = |at: usize| text[..at].matches('\n').count() + 1;
    let mut prefixes = vec!["crate::".to_string()];
    if depth > 0 {
        prefixes.push("super::".repeat(depth));
    }
    for prefix in &prefixes {
        for (at, _) in text.match_indices(prefix.as_str()) {
            let before = text[..at].chars().next_back();
            let after = &text[at + prefix.len()..];
            if before.is_some_and(|c| is_ident(c) || c == ':') {
                continue;
            }
            // `super::super::x` read with one `super::` too few names no module here.
            if prefix != "crate::" && after.starts_with("super::") {
                continue;
            }
            let names: Vec<String> = match after.strip_prefix('{') {
                // `crate::{a::X, b}`: the first name of each item.
                Some(group) => {
                    let mut depth = 1;
                    let mut items = vec![String::new()];
                    for c in group.chars() {
                        match c {
                            '{' => depth += 1,
                            '}' => {
                                depth -= 1;
                                if depth == 0 {
                                    break;
                                }
                            }
                            ',' if depth == 1 => items.push(String::new()),
                            _ if depth == 1 => items.last_mut().expect("one").push(c),
                            _ => {}
                        }
                    }
                    items
                        .iter()
                        .map(|i| i.trim().chars().take_while(|c| is_ident(*c)).collect())
                        .collect()
                }
                None => vec![after.chars().take_while(|c| is_ident(*c)).collect()],
            };
            for name in names.into_iter().filter(|n| !n.is_empty()) {
                out.entry(name).or_insert_with(|| line_of(at));
            }
        }
    }
    out
}

/// Every file of the module whose root file is `file` (at `depth` below the crate root),
/// following `mod` declarations that are not test modules.
fn module_files(file: &Path, depth: usize, out: &mut Vec<(PathBuf, usize, String)>) {
    let src = fs::read_to_string(file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    let (text, children) = strip_tests(&src);
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    let dir = if name == "mod" || name == "lib" {
        file.parent().expect("a directory").to_path_buf()
    } else {
        file.with_extension("")
    };
    for (child, test) in children {
        if test {
            continue;
        }
        let flat = dir.join(format!("{child}.rs"));
        let nested = dir.join(&child).join("mod.rs");
        let path = if flat.exists() { flat } else { nested };
        module_files(&path, depth + 1, out);
    }
    out.push((file.to_path_buf(), depth, text));
}

/// The graph of the crate whose sources are in `src` (its `lib.rs` declares the modules).
fn graph(src: &Path) -> Graph {
    let (_, tops) = strip_tests(&fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs"));
    let names: BTreeSet<String> = tops.iter().map(|(n, _)| n.clone()).collect();
    let mut g = Graph::new();
    for (name, test) in &tops {
        if *test {
            continue;
        }
        let flat = src.join(format!("{name}.rs"));
        let root = if flat.exists() {
            flat
        } else {
            src.join(name).join("mod.rs")
        };
        let mut files = Vec::new();
        module_files(&root, 1, &mut files);
        let uses = g.entry(name.clone()).or_default();
        for (file, depth, text) in files {
            for (used, line) in mentions(&text, depth) {
                if used != *name && names.contains(&used) {
                    uses.entry(used).or_insert(Use {
                        file: file.clone(),
                        line,
                    });
                }
            }
        }
    }
    g
}

/// The strongly connected components of the graph with more than one module: each is a set
/// of modules that all reach one another, every cycle lies inside one.
fn tangles(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| -> BTreeSet<String> {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(m) = todo.pop() {
            for next in g.get(&m).into_iter().flat_map(|u| u.keys()) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|m| (m, reach(m))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for m in g.keys() {
        if !reaches[m].contains(m) || out.iter().any(|t| t.contains(m)) {
            continue;
        }
        let tangle = reaches[m]
            .iter()
            .filter(|o| reaches.get(o).is_some_and(|r| r.contains(m)))
            .cloned()
            .collect();
        out.push(tangle);
    }
    out
}

/// A cycle through the modules of `within`, as the modules along it (the first one repeated
/// at the end).
fn cycle_in(g: &Graph, within: &BTreeSet<String>) -> Vec<String> {
    let start = within.iter().next().expect("a module").clone();
    // Breadth-first from the start back to it, inside the tangle: the shortest such cycle.
    let mut from: BTreeMap<String, String> = BTreeMap::new();
    let mut todo = std::collections::VecDeque::from([start.clone()]);
    while let Some(m) = todo.pop_front() {
        for next in g[&m].keys().filter(|n| within.contains(*n)) {
            if *next == start {
                // Back from `m` to the start along the way it was reached.
                let mut path = vec![m.clone()];
                while let Some(p) = from.get(path.last().expect("one")) {
                    path.push(p.clone());
                }
                path.reverse();
                path.push(start.clone());
                return path;
            }
            if !from.contains_key(next) && *next != start {
                from.insert(next.clone(), m.clone());
                todo.push_back(next.clone());
            }
        }
    }
    unreachable!("every module of a tangle reaches the others")
}

/// Every cycle's tangle in words, each with one cycle through it, step by step with where
/// each step is written.
fn cycles(g: &Graph, root: &Path) -> Vec<String> {
    tangles(g)
        .iter()
        .map(|t| {
            let c = cycle_in(g, t);
            let names: Vec<&str> = t.iter().map(String::as_str).collect();
            format!(
                "modules that import one another: {{{}}}\n{}",
                names.join(", "),
                describe(g, &c, root)
            )
        })
        .collect()
}

/// The cycle in words, each step with where it is written.
fn describe(g: &Graph, cycle: &[String], root: &Path) -> String {
    let steps: Vec<String> = cycle
        .windows(2)
        .map(|w| {
            let u = &g[&w[0]][&w[1]];
            let file = u.file.strip_prefix(root).unwrap_or(&u.file);
            format!("  {} uses {} ({}:{})", w[0], w[1], file.display(), u.line)
        })
        .collect();
    format!("import cycle: {}\n{}", cycle.join(" -> "), steps.join("\n"))
}

/// Uses that break [`RULES`], in words.
fn broken_rules(g: &Graph, root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for (module, allowed) in RULES {
        for (used, u) in g.get(*module).into_iter().flatten() {
            if !allowed.contains(&used.as_str()) {
                let file = u.file.strip_prefix(root).unwrap_or(&u.file);
                out.push(format!(
                    "{module} may use only {allowed:?}, but uses {used} ({}:{})",
                    file.display(),
                    u.line
                ));
            }
        }
    }
    out
}

fn crate_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn the_modules_form_layers_without_a_cycle() {
    let root = crate_dir();
    let g = graph(&root.join("src"));
    assert!(g.contains_key("proto") && g.contains_key("sync"), "{g:?}");
    let cycles = cycles(&g, &root);
    assert!(cycles.is_empty(), "{}", cycles.join("\n"));
    let broken = broken_rules(&g, &root);
    assert!(broken.is_empty(), "{}", broken.join("\n"));
    for (module, _) in RULES {
        assert!(g.contains_key(*module), "no module {module}: update RULES");
    }
}

/// The places outside `report` (and outside test modules) that print: a terminal line from
/// anywhere else would bypass the report's voice, counts and escaping.
fn printing_outside_report(src: &Path) -> Vec<String> {
    let (_, tops) = strip_tests(&fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs"));
    let mut out = Vec::new();
    for (name, test) in &tops {
        if *test || name == "report" {
            continue;
        }
        let flat = src.join(format!("{name}.rs"));
        let root = if flat.exists() {
            flat
        } else {
            src.join(name).join("mod.rs")
        };
        let mut files = Vec::new();
        module_files(&root, 1, &mut files);
        for (file, _, text) in files {
            let chars: Vec<char> = text.chars().collect();
            let class = classify(&chars);
            let code: String = chars
                .iter()
                .zip(&class)
                .map(|(c, k)| if *k == Class::Code { *c } else { ' ' })
                .collect();
            for (n, line) in code.lines().enumerate() {
                let prints = ["println!", "eprintln!", "print!", "eprint!"]
                    .iter()
                    .any(|m| {
                        line.match_indices(m)
                            .any(|(at, _)| !line[..at].ends_with(|c: char| is_ident(c)))
                    });
                if prints {
                    let shown = file.strip_prefix(src).unwrap_or(&file);
                    let original = fs::read_to_string(&file).unwrap_or_default();
                    let written = original.lines().nth(n).unwrap_or("").trim().to_string();
                    out.push(format!("src/{}:{}: {written}", shown.display(), n + 1));
                }
            }
        }
    }
    out
}

#[test]
fn only_the_report_writes_to_the_terminal() {
    let src = crate_dir().join("src");
    let found = printing_outside_report(&src);
    assert!(
        found.is_empty(),
        "print through report::Reporter:\n{}",
        found.join("\n")
    );
    // It would see one.
    let dir = fake_crate(&[
        ("lib.rs", "pub mod a;\npub mod report;\n"),
        ("a.rs", "fn f() {\n    eprintln!(\"x\");\n}\n#[cfg(test)]\nmod tests {\n    fn g() { println!(); }\n}\n"),
        ("report.rs", "fn f() { println!(\"y\"); }\n"),
    ]);
    assert_eq!(
        printing_outside_report(dir.path()),
        ["src/a.rs:2: eprintln!(\"x\");"]
    );
}

/// Writes a crate's sources below a new directory: `(path, text)` pairs.
fn fake_crate(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    for (path, text) in files {
        let p = dir.path().join(path);
        fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }
    dir
}

#[test]
fn a_cycle_through_a_child_file_a_doc_link_or_super_is_found_and_named() {
    let lib = "pub mod a;\npub mod b;\npub mod c;\n#[cfg(test)]\nmod t;\n";
    // a -> b in code, b -> c in a child file, c -> a in a doc link only.
    let dir = fake_crate(&[
        ("lib.rs", lib),
        ("a.rs", "use crate::b::X;\n"),
        ("b/mod.rs", "mod inner;\npub struct X;\n"),
        ("b/inner.rs", "fn f() -> super::super::c::Y { todo!() }\n"),
        ("c.rs", "/// Like [`crate::a`].\npub struct Y;\n"),
        ("t.rs", "use crate::a;\n"),
    ]);
    let g = graph(dir.path());
    let found = cycles(&g, dir.path());
    assert_eq!(found.len(), 1, "{found:?}");
    let text = &found[0];
    assert!(text.contains("{a, b, c}"), "{text}");
    assert!(text.contains("a -> b -> c -> a"), "{text}");
    assert!(text.contains("b uses c (b/inner.rs:1)"), "{text}");
    assert!(text.contains("c uses a (c.rs:1)"), "{text}");
    // A grouped import and a re-export count like any other use.
    let dir = fake_crate(&[
        ("lib.rs", "pub mod a;\npub mod b;\n"),
        ("a.rs", "use crate::{b::X, paths};\n"),
        ("b.rs", "pub use crate::a::Z;\npub struct X;\n"),
    ]);
    let g = graph(dir.path());
    assert_eq!(tangles(&g), [BTreeSet::from(["a".into(), "b".into()])]);
    assert_eq!(cycle_in(&g, &tangles(&g)[0]), ["a", "b", "a"]);
}

#[test]
fn test_modules_strings_and_comments_inside_them_are_left_out() {
    let a = r##"
use crate::b;
const BRACES: &str = "}}} { crate::c";
fn f() -> char { '}' }
#[cfg(test)]
mod tests {
    use crate::c;
    fn g<'a>(x: &'a str) -> &'a str { let _ = "}"; let _ = '{'; x }
    /* } */
    // }
}
fn h() { let _ = r#"}"#; }
"##;
    let dir = fake_crate(&[
        ("lib.rs", "pub mod a;\npub mod b;\npub mod c;\n"),
        ("a.rs", a),
        ("b.rs", ""),
        ("c.rs", "use crate::a;\n"),
    ]);
    let g = graph(dir.path());
    let used: Vec<&String> = g["a"].keys().collect();
    // "crate::c" in a string is text, not a use; the test module's use is left out.
    assert_eq!(used, ["b"], "{g:?}");
    assert!(tangles(&g).is_empty());
    let rules_break = fake_crate(&[
        ("lib.rs", "pub mod paths;\npub mod model;\n"),
        ("paths.rs", "/// See [`crate::model::Digest`].\n"),
        ("model.rs", ""),
    ]);
    let broken = broken_rules(&graph(rules_break.path()), rules_break.path());
    assert_eq!(
        broken,
        ["paths may use only [], but uses model (paths.rs:1)"],
        "{broken:?}"
    );
}
