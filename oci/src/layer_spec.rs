//! The layer grammar (upstream OCI_LAYERS, §5.4): whitespace-separated `name:type:content`
//! entries; the content is everything after the second `:`, items separated by `+`.
//!
//! | type          | content            | the layer holds                                        |
//! |---------------|--------------------|--------------------------------------------------------|
//! | `packages`    | `pkg1+pkg2`        | the rootfs files those packages own (package database)  |
//! | `directories` | `/d1+/d2`          | the rootfs trees under those directories                |
//! | `files`       | `/f1+/f2`          | those rootfs files                                      |
//! | `host`        | `src:dst+src:dst`  | build-machine files (`src`) placed at `dst`             |
//!
//! Empty items (`a+`, `a++b`) are ignored: conditional content in recipes expands to `+pkg` or to
//! nothing. Every layer holds only what earlier layers do not (see `plan`).

use std::fmt;
use std::path::{Component, Path, PathBuf};

use super::OciError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LayerType {
    Packages,
    Directories,
    Files,
    Host,
}

impl LayerType {
    pub fn as_str(self) -> &'static str {
        match self {
            LayerType::Packages => "packages",
            LayerType::Directories => "directories",
            LayerType::Files => "files",
            LayerType::Host => "host",
        }
    }
}

impl fmt::Display for LayerType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One `host` item: a build-machine path and where it goes in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostItem {
    pub src: PathBuf,
    /// Relative to the image root (no leading `/`).
    pub dest: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LayerContent {
    Packages(Vec<String>),
    /// Paths relative to the rootfs (no leading `/`).
    Directories(Vec<PathBuf>),
    Files(Vec<PathBuf>),
    Host(Vec<HostItem>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerSpec {
    pub name: String,
    pub content: LayerContent,
}

impl LayerSpec {
    pub fn layer_type(&self) -> LayerType {
        match self.content {
            LayerContent::Packages(_) => LayerType::Packages,
            LayerContent::Directories(_) => LayerType::Directories,
            LayerContent::Files(_) => LayerType::Files,
            LayerContent::Host(_) => LayerType::Host,
        }
    }

    /// The content items as written (normalised), sorted: part of the cache key.
    pub fn sorted_items(&self) -> Vec<String> {
        let mut items: Vec<String> = match &self.content {
            LayerContent::Packages(p) => p.clone(),
            LayerContent::Directories(p) | LayerContent::Files(p) => {
                p.iter().map(|p| format!("/{}", p.display())).collect()
            }
            LayerContent::Host(h) => h
                .iter()
                .map(|h| format!("{}:/{}", h.src.display(), h.dest.display()))
                .collect(),
        };
        items.sort();
        items
    }
}

/// Parses a whole OCI_LAYERS value (entries separated by whitespace). Names must be unique.
pub fn parse_layers(value: &str) -> Result<Vec<LayerSpec>, OciError> {
    let specs = value
        .split_whitespace()
        .map(parse_entry)
        .collect::<Result<Vec<_>, _>>()?;
    for (i, s) in specs.iter().enumerate() {
        if specs[..i].iter().any(|p| p.name == s.name) {
            return Err(OciError::LayerSpec {
                entry: s.name.clone(),
                reason: "the layer name is used twice".into(),
            });
        }
    }
    Ok(specs)
}

/// Parses one `name:type:content` entry.
pub fn parse_entry(entry: &str) -> Result<LayerSpec, OciError> {
    let bad = |reason: String| OciError::LayerSpec {
        entry: entry.to_string(),
        reason,
    };
    let mut parts = entry.splitn(3, ':');
    let (Some(name), Some(kind), Some(content)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad("format is 'name:type:content'".into()));
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
    {
        return Err(bad(format!(
            "layer name '{name}' must be non-empty and use only letters, digits, '-', '_' and '.'"
        )));
    }
    let items: Vec<&str> = content.split('+').filter(|i| !i.is_empty()).collect();
    if items.is_empty() {
        return Err(bad("the content names nothing".into()));
    }
    let content = match kind {
        "packages" => {
            for p in &items {
                if p.contains('/') || p.chars().any(char::is_whitespace) {
                    return Err(bad(format!("'{p}' is not a package name")));
                }
            }
            LayerContent::Packages(items.iter().map(|s| s.to_string()).collect())
        }
        "directories" => LayerContent::Directories(
            items
                .iter()
                .map(|p| image_path(p).map_err(&bad))
                .collect::<Result<_, _>>()?,
        ),
        "files" => LayerContent::Files(
            items
                .iter()
                .map(|p| image_path(p).map_err(&bad))
                .collect::<Result<_, _>>()?,
        ),
        "host" => LayerContent::Host(
            items
                .iter()
                .map(|pair| {
                    let Some((src, dst)) = pair.rsplit_once(':') else {
                        return Err(bad(format!(
                            "host content '{pair}': format is 'source_path:dest_path'"
                        )));
                    };
                    if src.is_empty() || dst.is_empty() {
                        return Err(bad(format!(
                            "host content '{pair}': format is 'source_path:dest_path'"
                        )));
                    }
                    Ok(HostItem {
                        src: PathBuf::from(src),
                        dest: image_path(dst).map_err(&bad)?,
                    })
                })
                .collect::<Result<_, _>>()?,
        ),
        other => {
            return Err(bad(format!(
                "layer type '{other}' must be 'packages', 'directories', 'files' or 'host'"
            )))
        }
    };
    Ok(LayerSpec {
        name: name.to_string(),
        content,
    })
}

/// A path inside the image, normalised to relative form; `..` and the root itself are refused.
fn image_path(p: &str) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(n) => out.push(n),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("path '{p}' must not contain '..'"))
            }
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!(
            "path '{p}' names the image root; name something inside it"
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(entry: &str) -> String {
        match parse_entry(entry) {
            Err(OciError::LayerSpec { reason, .. }) => reason,
            other => panic!("{entry}: expected a spec error, got {other:?}"),
        }
    }

    #[test]
    fn all_four_types_parse() {
        let specs = parse_layers(
            " base:packages:busybox+base-files++\n shell:directories:/bin+/usr/bin \
             cfg:files:/etc/hostname host:host:/tmp/a:/opt/a+/x:y:/etc/y",
        )
        .expect("parse");
        assert_eq!(specs.len(), 4);
        assert_eq!(
            specs[0].content,
            LayerContent::Packages(vec!["busybox".into(), "base-files".into()])
        );
        assert_eq!(
            specs[1].content,
            LayerContent::Directories(vec!["bin".into(), "usr/bin".into()])
        );
        assert_eq!(specs[2].layer_type(), LayerType::Files);
        // The source is everything before the last ':'.
        assert_eq!(
            specs[3].content,
            LayerContent::Host(vec![
                HostItem {
                    src: "/tmp/a".into(),
                    dest: "opt/a".into()
                },
                HostItem {
                    src: "/x:y".into(),
                    dest: "etc/y".into()
                },
            ])
        );
    }

    #[test]
    fn bad_entries_say_why() {
        assert!(reason("base:packages").contains("name:type:content"));
        assert!(reason("base:tarballs:x").contains("'tarballs'"));
        assert!(reason(":packages:x").contains("layer name"));
        assert!(reason("a b:packages:x").contains("layer name"));
        assert!(reason("base:packages:+").contains("names nothing"));
        assert!(reason("h:host:/only-a-path").contains("source_path:dest_path"));
        assert!(reason("d:directories:/usr/../etc").contains(".."));
        assert!(reason("d:directories:/").contains("image root"));
        assert!(reason("p:packages:a/b").contains("not a package"));
        match parse_layers("a:files:/x a:files:/y") {
            Err(OciError::LayerSpec { reason, .. }) => assert!(reason.contains("twice")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn sorted_items_are_order_independent() {
        let a = parse_entry("x:packages:b+a+c").expect("a");
        let b = parse_entry("x:packages:c+b+a").expect("b");
        assert_eq!(a.sorted_items(), b.sorted_items());
        let d = parse_entry("x:directories:usr+/etc").expect("d");
        assert_eq!(
            d.sorted_items(),
            vec!["/etc".to_string(), "/usr".to_string()]
        );
    }
}
