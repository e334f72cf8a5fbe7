//! Which entry goes into which layer. Each layer spec claims the rootfs entries it names (with
//! their not-yet-claimed parent directories); an entry claimed by an earlier layer is not
//! repeated (delta-only); whatever no spec claims goes into a final `rest` layer, so the merged
//! view equals the rootfs. With a base image, entries the base already has unchanged are left
//! out, and what the base has and the rootfs does not becomes whiteouts (in the first new layer).
//! Without layer specs the whole rootfs is one layer (`rootfs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};

use super::base::{self, BaseImage};
use super::layer_spec::{LayerContent, LayerSpec};
use super::pkgdb::PackageDb;
use super::tree::{Node, NodeKind, Tree};
use super::OciError;

/// One entry of a layer.
/// Who owns the files in the image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OwnerPolicy {
    /// Everything `0:0`, whatever the rootfs says: a lossy choice for a rootfs staged by an
    /// unprivileged user without a root emulation. Only ever chosen explicitly.
    Root,
    /// The ids the rootfs has. The default: a rootfs staged and read under fakeroot or pseudo
    /// (as Yocto's tasks run) shows its real owners, and a service user's files must stay its own.
    #[default]
    Preserve,
}

impl OwnerPolicy {
    pub fn ids(self, uid: u32, gid: u32) -> (u32, u32) {
        match self {
            OwnerPolicy::Root => (0, 0),
            OwnerPolicy::Preserve => (uid, gid),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            OwnerPolicy::Root => "root",
            OwnerPolicy::Preserve => "preserve",
        }
    }
}

#[derive(Debug, Clone)]
pub enum Entry {
    /// A rootfs node (index into `Tree::nodes`).
    Rootfs(usize),
    /// A build-machine file placed at `node.path`.
    Host { abs: PathBuf, node: Node },
    /// A directory the image needs for a host entry that the rootfs does not have.
    SynthDir(PathBuf),
    /// A whiteout hiding this base path.
    Whiteout(PathBuf),
}

impl Entry {
    /// The path the entry has in the layer.
    pub fn layer_path(&self, tree: &Tree) -> PathBuf {
        match self {
            Entry::Rootfs(i) => tree.nodes[*i].path.clone(),
            Entry::Host { node, .. } => node.path.clone(),
            Entry::SynthDir(p) => p.clone(),
            Entry::Whiteout(p) => base::whiteout_name(p),
        }
    }
}

#[derive(Debug, Clone)]
pub struct LayerPlan {
    pub name: String,
    /// `packages`, `directories`, `files`, `host`, `rest` or `rootfs`.
    pub kind: String,
    /// The spec's content items, sorted (cache key).
    pub items: Vec<String>,
    /// Versions of the packages a `packages` layer names (cache key, MISS lines).
    pub pkg_versions: BTreeMap<String, String>,
    pub entries: Vec<Entry>,
    pub warnings: Vec<String>,
}

struct Planner<'a> {
    tree: &'a Tree,
    base: Option<&'a BaseImage>,
    owner: OwnerPolicy,
    claimed: Vec<bool>,
    synthesized: HashSet<PathBuf>,
}

impl Planner<'_> {
    /// Claims node `i` and its unclaimed ancestors for `entries`; nodes the base already has
    /// unchanged are claimed but not emitted.
    fn claim(&mut self, i: usize, entries: &mut Vec<Entry>) -> Result<(), OciError> {
        for a in self.tree.ancestors(i).into_iter().chain([i]) {
            if self.claimed[a] {
                continue;
            }
            self.claimed[a] = true;
            let node = &self.tree.nodes[a];
            let unchanged = match self.base {
                Some(b) => {
                    let (uid, gid) = self.owner.ids(node.uid, node.gid);
                    b.has_same(node, &self.tree.root.join(&node.path), uid, gid)?
                }
                None => false,
            };
            if !unchanged {
                entries.push(Entry::Rootfs(a));
            }
        }
        Ok(())
    }

    fn claim_subtree(&mut self, i: usize, entries: &mut Vec<Entry>) -> Result<(), OciError> {
        for j in i..self.tree.nodes[i].end {
            self.claim(j, entries)?;
        }
        Ok(())
    }
}

/// Assigns the rootfs (and host files) to layers; see the module comment.
pub fn assign(
    tree: &Tree,
    specs: &[LayerSpec],
    base: Option<&BaseImage>,
    owner: OwnerPolicy,
) -> Result<Vec<LayerPlan>, OciError> {
    let mut p = Planner {
        tree,
        base,
        owner,
        claimed: vec![false; tree.nodes.len()],
        synthesized: HashSet::new(),
    };
    let mut db: Option<PackageDb> = None;
    let mut host_paths: HashMap<PathBuf, bool> = HashMap::new();
    let mut layers = Vec::new();
    for spec in specs {
        let mut plan = LayerPlan {
            name: spec.name.clone(),
            kind: spec.layer_type().as_str().to_string(),
            items: spec.sorted_items(),
            pkg_versions: BTreeMap::new(),
            entries: Vec::new(),
            warnings: Vec::new(),
        };
        match &spec.content {
            LayerContent::Packages(pkgs) => {
                if db.is_none() {
                    db = Some(PackageDb::open(&tree.root)?);
                }
                let db = db
                    .as_ref()
                    .ok_or_else(|| OciError::Invalid("package db".into()))?;
                let mut missing = 0usize;
                for pkg in pkgs {
                    plan.pkg_versions.insert(pkg.clone(), db.version(pkg)?);
                    for f in db.files(pkg)? {
                        match tree.locate(&f)? {
                            Some(i) => p.claim(i, &mut plan.entries)?,
                            None => missing += 1,
                        }
                    }
                }
                if missing > 0 {
                    plan.warnings.push(format!(
                        "layer '{}': {missing} path(s) the {} database lists are not in the rootfs (removed after install?)",
                        spec.name,
                        db.kind().as_str()
                    ));
                }
            }
            LayerContent::Directories(dirs) => {
                for d in dirs {
                    let named = tree.resolve(d)?.ok_or_else(|| {
                        OciError::Invalid(format!(
                            "layer '{}': directory /{} is not in the rootfs {}",
                            spec.name,
                            d.display(),
                            tree.root.display()
                        ))
                    })?;
                    let target = tree.follow(d)?;
                    if target.is_none_or(|t| tree.nodes[t].kind != NodeKind::Dir) {
                        return Err(OciError::Invalid(format!(
                            "layer '{}': /{} is not a directory (use a files layer)",
                            spec.name,
                            d.display()
                        )));
                    }
                    for i in named {
                        if tree.nodes[i].kind == NodeKind::Dir {
                            p.claim_subtree(i, &mut plan.entries)?;
                        } else {
                            p.claim(i, &mut plan.entries)?;
                        }
                    }
                }
            }
            LayerContent::Files(files) => {
                for f in files {
                    let named = tree.resolve(f)?.ok_or_else(|| {
                        OciError::Invalid(format!(
                            "layer '{}': file /{} is not in the rootfs {}",
                            spec.name,
                            f.display(),
                            tree.root.display()
                        ))
                    })?;
                    if tree
                        .follow(f)?
                        .is_some_and(|t| tree.nodes[t].kind == NodeKind::Dir)
                    {
                        return Err(OciError::Invalid(format!(
                            "layer '{}': /{} is a directory (use a directories layer)",
                            spec.name,
                            f.display()
                        )));
                    }
                    for i in named {
                        p.claim(i, &mut plan.entries)?;
                    }
                }
            }
            LayerContent::Host(items) => {
                plan.warnings.push(format!(
                    "layer '{}' takes files from this build machine ({}): the image depends on the machine it is built on",
                    spec.name,
                    items.iter().map(|h| h.src.display().to_string()).collect::<Vec<_>>().join(", ")
                ));
                for item in items {
                    fs::symlink_metadata(&item.src).map_err(|e| {
                        OciError::Invalid(format!(
                            "layer '{}': host path not found: {} ({e})",
                            spec.name,
                            item.src.display()
                        ))
                    })?;
                    // Parent directories: the rootfs's, or made up when it has none.
                    let parents: Vec<PathBuf> = item
                        .dest
                        .ancestors()
                        .skip(1)
                        .filter(|a| !a.as_os_str().is_empty())
                        .map(Path::to_path_buf)
                        .collect();
                    for a in parents.into_iter().rev() {
                        match tree.get(&a) {
                            Some(i) => p.claim(i, &mut plan.entries)?,
                            None => {
                                if p.synthesized.insert(a.clone()) {
                                    host_paths.insert(a.clone(), true);
                                    plan.entries.push(Entry::SynthDir(a));
                                }
                            }
                        }
                    }
                    for (abs, node) in host_tree(&item.src, &item.dest)? {
                        // The host file replaces the rootfs's: the rest layer must not bring
                        // the rootfs version back.
                        if let Some(i) = tree.get(&node.path) {
                            p.claimed[i] = true;
                        }
                        host_paths.insert(node.path.clone(), node.kind == NodeKind::Dir);
                        plan.entries.push(Entry::Host { abs, node });
                    }
                }
            }
        }
        layers.push(plan);
    }

    let mut rest = LayerPlan {
        name: if specs.is_empty() { "rootfs" } else { "rest" }.into(),
        kind: if specs.is_empty() { "rootfs" } else { "rest" }.into(),
        items: Vec::new(),
        pkg_versions: BTreeMap::new(),
        entries: Vec::new(),
        warnings: Vec::new(),
    };
    for i in 0..tree.nodes.len() {
        p.claim(i, &mut rest.entries)?;
    }
    if specs.is_empty() || !rest.entries.is_empty() {
        layers.push(rest);
    }

    if let Some(b) = base {
        let exists = |path: &Path| -> Option<bool> {
            tree.get(path)
                .map(|i| tree.nodes[i].kind == NodeKind::Dir)
                .or_else(|| host_paths.get(path).copied())
        };
        let wh = base::whiteouts(&b.view, exists);
        if let Some(first) = layers.first_mut() {
            first.entries.extend(wh.into_iter().map(Entry::Whiteout));
        }
    }
    for l in &mut layers {
        l.entries.sort_by_cached_key(|e| e.layer_path(tree));
        if l.entries.is_empty() && l.kind != "rootfs" {
            l.warnings.push(format!(
                "layer '{}' is empty: everything it names is in earlier layers",
                l.name
            ));
        }
    }
    Ok(layers)
}

/// A host path and everything under it (symlinks not followed), as nodes at `dest`.
fn host_tree(src: &Path, dest: &Path) -> Result<Vec<(PathBuf, Node)>, OciError> {
    let mut out = Vec::new();
    let Some(top) = Node::from_path(src, dest.to_path_buf())? else {
        return Ok(out);
    };
    let is_dir = top.kind == NodeKind::Dir;
    out.push((src.to_path_buf(), top));
    if is_dir {
        let mut names: Vec<_> = fs::read_dir(src)
            .map_err(|e| OciError::io(src, e))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(|e| OciError::io(src, e))?;
        names.sort_by(|a, b| a.as_encoded_bytes().cmp(b.as_encoded_bytes()));
        for n in names {
            out.extend(host_tree(&src.join(&n), &dest.join(&n))?);
        }
    }
    Ok(out)
}
