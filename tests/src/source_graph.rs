//! The import graph between the files of one crate, read from its sources: which file uses an
//! item defined in which other file. It backs the structure guard rail (`tests/tests/layers.rs`):
//! no import cycles between files, and in the host crate no import that goes up its layer list.
//!
//! A text scan, not a compiler: comments and literals are blanked, `#[cfg(test)]` items dropped
//! (tests may reach anywhere), then every `use` tree and every inline `crate::`/`super::`/`self::`
//! path is resolved against the module tree on disk. `mod` declarations are not edges, and a
//! `pub use` is an alias, not a use: a path through a re-export resolves to the file that defines
//! the item. Importing a module itself (`use crate::vm;`) is no edge either; the paths through it
//! are.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Module path from the crate root, e.g. `["vm", "qemu"]`.
pub type ModPath = Vec<String>;

/// One crate's files and the edges between them (by path relative to `src/`).
#[derive(Debug, Default)]
pub struct Graph {
    pub files: BTreeSet<String>,
    /// `from` → the files it imports from, each with one line that shows the import.
    pub edges: BTreeMap<String, BTreeMap<String, String>>,
}

struct Module {
    rel: String,
    code: String,
    /// `pub use` aliases: exported name → path (relative to this module).
    reexports: BTreeMap<String, Vec<String>>,
    glob_reexports: Vec<Vec<String>>,
}

/// Reads the library under `src` (root `lib.rs`; `main.rs` and `bin/` are other crates).
pub fn scan(src: &Path) -> Graph {
    let mut modules: BTreeMap<ModPath, Module> = BTreeMap::new();
    collect(src, src, &mut modules);
    let mut graph = Graph::default();
    for m in modules.values() {
        graph.files.insert(m.rel.clone());
    }
    for (path, m) in &modules {
        let mut uses = Vec::new();
        let rest = extract_uses(&m.code, &mut uses);
        let mut bindings: BTreeMap<String, ModPath> = BTreeMap::new();
        let add = |target: Resolved, line: &str, graph: &mut Graph| {
            if let Resolved::Item(file) = target {
                if file != m.rel {
                    graph
                        .edges
                        .entry(m.rel.clone())
                        .or_default()
                        .entry(file)
                        .or_insert_with(|| line.trim().to_string());
                }
            }
        };
        for u in &uses {
            for (p, alias) in &u.paths {
                let r = resolve(&modules, path, &BTreeMap::new(), p, 0);
                if let Resolved::Module(target) = &r {
                    let name = alias.clone().unwrap_or_else(|| {
                        if p.last().is_some_and(|s| s == "self") {
                            p[p.len() - 2].clone()
                        } else {
                            p.last().cloned().unwrap_or_default()
                        }
                    });
                    bindings.insert(name, target.clone());
                    if p.last().is_some_and(|s| s == "*") && !u.public {
                        add(
                            Resolved::Item(modules[target].rel.clone()),
                            &u.text,
                            &mut graph,
                        );
                    }
                } else if !u.public {
                    add(r, &u.text, &mut graph);
                }
            }
        }
        for (p, line) in inline_paths(&rest) {
            let r = resolve(&modules, path, &bindings, &p, 0);
            add(r, &line, &mut graph);
        }
    }
    graph
}

fn collect(src: &Path, dir: &Path, out: &mut BTreeMap<ModPath, Module>) {
    let mut entries: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
        .flatten()
        .map(|e| e.path())
        .collect();
    entries.sort();
    for p in entries {
        let rel = p.strip_prefix(src).expect("under src").to_path_buf();
        if p.is_dir() {
            if rel != Path::new("bin") {
                collect(src, &p, out);
            }
            continue;
        }
        if p.extension().is_none_or(|x| x != "rs") || rel == Path::new("main.rs") {
            continue;
        }
        let mut mp: ModPath = rel
            .with_extension("")
            .components()
            .map(|c| c.as_os_str().to_string_lossy().into_owned())
            .collect();
        if mp.last().is_some_and(|s| s == "mod" || s == "lib") {
            mp.pop();
        }
        let text = fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let code = drop_test_items(&blank_comments_and_literals(&text));
        let mut uses = Vec::new();
        extract_uses(&code, &mut uses);
        let mut reexports = BTreeMap::new();
        let mut glob_reexports = Vec::new();
        for u in uses.iter().filter(|u| u.public) {
            for (path, alias) in &u.paths {
                if path.last().is_some_and(|s| s == "*") {
                    glob_reexports.push(path[..path.len() - 1].to_vec());
                } else if let Some(name) = alias.clone().or_else(|| path.last().cloned()) {
                    reexports.insert(name, path.clone());
                }
            }
        }
        out.insert(
            mp,
            Module {
                rel: rel.to_string_lossy().into_owned(),
                code,
                reexports,
                glob_reexports,
            },
        );
    }
}

#[derive(Debug, PartialEq)]
enum Resolved {
    /// An item defined in this file.
    Item(String),
    Module(ModPath),
    /// Another crate, a local item or something the scan cannot place.
    Outside,
}

fn resolve(
    modules: &BTreeMap<ModPath, Module>,
    from: &ModPath,
    bindings: &BTreeMap<String, ModPath>,
    path: &[String],
    depth: usize,
) -> Resolved {
    if depth > 8 || path.is_empty() {
        return Resolved::Outside;
    }
    let mut cur: ModPath;
    let mut i = 0;
    match path[0].as_str() {
        "crate" => {
            cur = Vec::new();
            i = 1;
        }
        "self" => {
            cur = from.clone();
            i = 1;
        }
        "super" => {
            cur = from.clone();
            while path.get(i).is_some_and(|s| s == "super") {
                if cur.pop().is_none() {
                    return Resolved::Outside;
                }
                i += 1;
            }
        }
        first => {
            let child = [from.as_slice(), &[first.to_string()]].concat();
            if modules.contains_key(&child) {
                cur = child;
                i = 1;
            } else if let Some(m) = bindings.get(first) {
                cur = m.clone();
                i = 1;
            } else {
                return Resolved::Outside;
            }
        }
    }
    while let Some(seg) = path.get(i) {
        let child = [cur.as_slice(), std::slice::from_ref(seg)].concat();
        if !modules.contains_key(&child) {
            break;
        }
        cur = child;
        i += 1;
    }
    let Some(module) = modules.get(&cur) else {
        return Resolved::Outside;
    };
    let Some(name) = path.get(i) else {
        return Resolved::Module(cur);
    };
    if name == "*" || name == "self" {
        return Resolved::Module(cur);
    }
    if let Some(target) = module.reexports.get(name) {
        let r = resolve(modules, &cur, &BTreeMap::new(), target, depth + 1);
        if r != Resolved::Outside {
            return r;
        }
    }
    for glob in &module.glob_reexports {
        if let Resolved::Module(g) = resolve(modules, &cur, &BTreeMap::new(), glob, depth + 1) {
            if defines(&modules[&g].code, name) {
                return Resolved::Item(modules[&g].rel.clone());
            }
        }
    }
    Resolved::Item(module.rel.clone())
}

/// Whether `code` defines an item called `name` at any level (good enough for glob re-exports).
fn defines(code: &str, name: &str) -> bool {
    let words: Vec<&str> = code
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '!'))
        .filter(|w| !w.is_empty())
        .collect();
    words.windows(2).any(|w| {
        w[1] == name
            && matches!(
                w[0],
                "fn" | "struct" | "enum" | "trait" | "type" | "const" | "static" | "macro_rules!"
            )
    })
}

/// One `use` declaration: its expanded paths (with `as` names) and whether it re-exports.
struct Use {
    public: bool,
    text: String,
    paths: Vec<(Vec<String>, Option<String>)>,
}

/// Finds the `use` declarations in `code`; returns `code` with them blanked.
fn extract_uses(code: &str, out: &mut Vec<Use>) -> String {
    let bytes = code.as_bytes();
    let mut rest = code.to_string().into_bytes();
    let mut i = 0;
    while let Some(off) = code[i..].find("use") {
        let at = i + off;
        i = at + 3;
        let before_ok = at == 0 || !is_ident(bytes[at - 1]);
        let after_ok = bytes.get(at + 3).is_some_and(|b| b.is_ascii_whitespace());
        if !before_ok || !after_ok {
            continue;
        }
        let Some(end) = code[at..].find(';').map(|e| at + e) else {
            break;
        };
        let head = code[..at].trim_end();
        let public = head.ends_with("pub") || (head.ends_with(')') && pub_restricted(head));
        let tree = &code[at + 3..end];
        let mut paths = Vec::new();
        parse_tree(&tokens(tree), &mut 0, &[], &mut paths);
        out.push(Use {
            public,
            text: format!("use{tree};")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            paths,
        });
        for b in &mut rest[at..=end] {
            *b = b' ';
        }
        i = end + 1;
    }
    String::from_utf8(rest).expect("ascii blanks keep utf-8")
}

fn pub_restricted(head: &str) -> bool {
    head.rfind("pub").is_some_and(|p| {
        let tail = head[p + 3..].trim_start();
        tail.starts_with('(') && !tail[1..].contains('(')
    })
}

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn tokens(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
        } else if is_ident(c) {
            let start = i;
            while i < b.len() && is_ident(b[i]) {
                i += 1;
            }
            out.push(s[start..i].to_string());
        } else if c == b':' && b.get(i + 1) == Some(&b':') {
            out.push("::".into());
            i += 2;
        } else {
            out.push((c as char).to_string());
            i += 1;
        }
    }
    out
}

/// Expands a use tree (`a::{b, c::{d as e}, f::*}`) into full paths.
fn parse_tree(
    t: &[String],
    i: &mut usize,
    prefix: &[String],
    out: &mut Vec<(Vec<String>, Option<String>)>,
) {
    let mut path = prefix.to_vec();
    if t.get(*i).is_some_and(|s| s == "::") {
        *i += 1;
    }
    loop {
        match t.get(*i).map(String::as_str) {
            Some("{") => {
                *i += 1;
                loop {
                    if t.get(*i).is_some_and(|s| s == "}") {
                        *i += 1;
                        break;
                    }
                    parse_tree(t, i, &path, out);
                    match t.get(*i).map(String::as_str) {
                        Some(",") => *i += 1,
                        Some("}") => {
                            *i += 1;
                            break;
                        }
                        _ => return,
                    }
                }
                return;
            }
            Some("*") => {
                *i += 1;
                path.push("*".into());
                out.push((path, None));
                return;
            }
            Some(seg) if seg != "," && seg != "}" => {
                path.push(seg.to_string());
                *i += 1;
                if t.get(*i).is_some_and(|s| s == "::") {
                    *i += 1;
                    continue;
                }
                let mut alias = None;
                if t.get(*i).is_some_and(|s| s == "as") {
                    alias = t.get(*i + 1).cloned();
                    *i += 2;
                }
                out.push((path, alias));
                return;
            }
            _ => return,
        }
    }
}

/// Inline paths `a::b::c` outside `use` declarations, each with its line.
fn inline_paths(code: &str) -> Vec<(Vec<String>, String)> {
    let mut out = Vec::new();
    for line in code.lines() {
        let b = line.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if !is_ident(b[i]) || (i > 0 && (is_ident(b[i - 1]) || preceded_by_colons(b, i))) {
                i += 1;
                continue;
            }
            let mut segs = Vec::new();
            let mut j = i;
            loop {
                let start = j;
                while j < b.len() && is_ident(b[j]) {
                    j += 1;
                }
                segs.push(line[start..j].to_string());
                let mut k = j;
                while k < b.len() && b[k] == b' ' {
                    k += 1;
                }
                if b.get(k) == Some(&b':') && b.get(k + 1) == Some(&b':') {
                    k += 2;
                    while k < b.len() && b[k] == b' ' {
                        k += 1;
                    }
                    if k < b.len() && is_ident(b[k]) {
                        j = k;
                        continue;
                    }
                }
                break;
            }
            if segs.len() > 1 && segs[0].as_bytes()[0].is_ascii_lowercase() {
                out.push((segs, line.to_string()));
            }
            i = j.max(i + 1);
        }
    }
    out
}

fn preceded_by_colons(b: &[u8], i: usize) -> bool {
    let mut k = i;
    while k > 0 && b[k - 1] == b' ' {
        k -= 1;
    }
    k >= 2 && b[k - 1] == b':' && b[k - 2] == b':'
}

/// `text` with comments and the contents of string and char literals replaced by spaces
/// (newlines kept, so line numbers and `lines()` still match the file).
pub fn blank_comments_and_literals(text: &str) -> String {
    let b = text.as_bytes();
    let mut out = b.to_vec();
    let blank = |out: &mut Vec<u8>, from: usize, to: usize| {
        for c in &mut out[from..to.min(b.len())] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
    };
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                let end = text[i..].find('\n').map_or(b.len(), |e| i + e);
                blank(&mut out, i, end);
                i = end;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                let mut j = i;
                while j < b.len() {
                    if b[j] == b'/' && b.get(j + 1) == Some(&b'*') {
                        depth += 1;
                        j += 2;
                    } else if b[j] == b'*' && b.get(j + 1) == Some(&b'/') {
                        depth -= 1;
                        j += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        j += 1;
                    }
                }
                blank(&mut out, i, j);
                i = j;
            }
            b'r' if (i == 0 || !is_ident(b[i - 1]))
                && matches!(b.get(i + 1), Some(b'"') | Some(b'#')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    i += 1;
                    continue;
                }
                let close = format!("\"{}", "#".repeat(hashes));
                let end = text[j + 1..]
                    .find(&close)
                    .map_or(b.len(), |e| j + 1 + e + close.len());
                blank(&mut out, j + 1, end.saturating_sub(close.len()));
                i = end;
            }
            b'"' => {
                let mut j = i + 1;
                while j < b.len() && b[j] != b'"' {
                    j += if b[j] == b'\\' { 2 } else { 1 };
                }
                blank(&mut out, i + 1, j);
                i = j + 1;
            }
            b'\'' => {
                // A char literal ('x', '\n', '\u{..}') or a lifetime ('a).
                if b.get(i + 1) == Some(&b'\\') {
                    let end = text[i + 2..].find('\'').map_or(b.len(), |e| i + 2 + e);
                    blank(&mut out, i + 1, end);
                    i = end + 1;
                } else if b.get(i + 2) == Some(&b'\'') {
                    blank(&mut out, i + 1, i + 2);
                    i += 3;
                } else {
                    // Multi-byte char literal or a lifetime.
                    let ch_len = text[i + 1..].chars().next().map_or(1, char::len_utf8);
                    if b.get(i + 1 + ch_len) == Some(&b'\'') {
                        blank(&mut out, i + 1, i + 1 + ch_len);
                        i += 2 + ch_len;
                    } else {
                        i += 1;
                    }
                }
            }
            _ => i += 1,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `code` without the items marked `#[cfg(test)]` (their text blanked).
pub fn drop_test_items(code: &str) -> String {
    let mut out = code.as_bytes().to_vec();
    let mut from = 0;
    while let Some(off) = code[from..].find("#[cfg(test)]") {
        let at = from + off;
        let body = at + "#[cfg(test)]".len();
        let mut depth = 0usize;
        let mut end = code.len();
        for (k, c) in code[body..].char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        end = body + k + 1;
                        break;
                    }
                }
                ';' if depth == 0 => {
                    end = body + k + 1;
                    break;
                }
                _ => {}
            }
        }
        for c in &mut out[at..end] {
            if *c != b'\n' {
                *c = b' ';
            }
        }
        from = end;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The strongly connected components of more than one file: each is at least one cycle.
pub fn cycles(g: &Graph) -> Vec<Vec<String>> {
    // Tarjan's algorithm, iterative enough for a crate's few hundred files.
    struct St<'a> {
        g: &'a Graph,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(s: &mut St<'a>, v: &'a str) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on.insert(v);
        let g = s.g;
        for w in g.edges.get(v).into_iter().flat_map(|m| m.keys()) {
            let w = w.as_str();
            if !s.index.contains_key(w) {
                visit(s, w);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(lw);
            } else if s.on.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).expect("visited");
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut comp = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on.remove(w);
                comp.push(w.to_string());
                if w == v {
                    break;
                }
            }
            if comp.len() > 1 {
                comp.sort();
                s.out.push(comp);
            }
        }
    }
    let mut s = St {
        g,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for f in &g.files {
        if !s.index.contains_key(f.as_str()) {
            visit(&mut s, f);
        }
    }
    s.out.sort();
    s.out
}

/// The edges inside one cycle, as `from -> to: the import` lines, to show where to cut it.
pub fn describe(g: &Graph, comp: &[String]) -> String {
    let set: BTreeSet<&String> = comp.iter().collect();
    let mut lines = Vec::new();
    for from in comp {
        for (to, line) in g.edges.get(from).into_iter().flatten() {
            if set.contains(to) {
                lines.push(format!("  {from} -> {to}: {line}"));
            }
        }
    }
    lines.join("\n")
}

/// The layer of a file: its first path component (`vm/qemu.rs` → `vm`, `session.rs` →
/// `session`); `None` for the crate root.
pub fn top_module(rel: &str) -> Option<String> {
    let first = rel.split('/').next()?;
    let name = first.strip_suffix(".rs").unwrap_or(first);
    (name != "lib").then(|| name.to_string())
}
