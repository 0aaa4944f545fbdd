//! The rules every file name in a volume must pass. File names come from user
//! input (object names, aliases, jmesPath aliases), so each one is checked here
//! before anything touches the filesystem.

use std::fmt;

/// Longest single path component tmpfs accepts (NAME_MAX).
const MAX_COMPONENT_BYTES: usize = 255;
/// A generous cap on a whole relative path; far below PATH_MAX once joined to
/// a kubelet target directory.
const MAX_PATH_BYTES: usize = 1024;

/// A relative file path inside a volume that has passed every rule: no empty,
/// `.` or `..` components, no component starting with `..` (kubelet reserves
/// those names for its `..data` layout), no NUL, not absolute, bounded length.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FilePath(String);

/// Why a file name was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathRule {
    Empty,
    Nul,
    Absolute,
    EmptyComponent,
    DotComponent,
    Reserved,
    ComponentTooLong,
    TooLong,
}

impl fmt::Display for PathRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PathRule::Empty => "the file name is empty",
            PathRule::Nul => "the file name contains a NUL character",
            PathRule::Absolute => "the file name is an absolute path",
            PathRule::EmptyComponent => {
                "the file name has an empty path component (\"//\" or a trailing \"/\")"
            }
            PathRule::DotComponent => "path can not contain ../ or ./ components",
            PathRule::Reserved => {
                "a path component may not start with \"..\" (reserved for the volume layout)"
            }
            PathRule::ComponentTooLong => "a path component is longer than 255 bytes",
            PathRule::TooLong => "the file name is longer than 1024 bytes",
        })
    }
}

impl FilePath {
    pub fn parse(name: &str) -> Result<Self, PathRule> {
        if name.is_empty() {
            return Err(PathRule::Empty);
        }
        if name.contains('\0') {
            return Err(PathRule::Nul);
        }
        if name.starts_with('/') {
            return Err(PathRule::Absolute);
        }
        if name.len() > MAX_PATH_BYTES {
            return Err(PathRule::TooLong);
        }
        for component in name.split('/') {
            if component.is_empty() {
                return Err(PathRule::EmptyComponent);
            }
            if component == "." || component == ".." {
                return Err(PathRule::DotComponent);
            }
            if component.starts_with("..") {
                return Err(PathRule::Reserved);
            }
            if component.len() > MAX_COMPONENT_BYTES {
                return Err(PathRule::ComponentTooLong);
            }
        }
        Ok(FilePath(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn components(&self) -> impl Iterator<Item = &str> {
        self.0.split('/')
    }

    /// The first component: the entry that appears at the top of the volume.
    pub fn top(&self) -> &str {
        self.components().next().unwrap_or_default()
    }

    /// True when one path is a directory prefix of the other, so both cannot
    /// exist in one file set (`a` as a file and `a/b` as a file below it).
    pub fn overlaps(&self, other: &FilePath) -> bool {
        let (short, long) = if self.0.len() <= other.0.len() {
            (&self.0, &other.0)
        } else {
            (&other.0, &self.0)
        };
        long == short || (long.starts_with(short.as_str()) && long.as_bytes()[short.len()] == b'/')
    }
}

impl fmt::Display for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for FilePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0)
    }
}

/// How `/` in object names becomes part of a file name (`pathTranslation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathTranslation {
    /// Replace every `/` with this character (default `_`).
    Replace(char),
    /// Keep `/` (sub-directories), strip leading slashes.
    Off,
}

impl PathTranslation {
    /// The file name for an object name or alias, exactly as the AWS provider
    /// derives it; the result still has to pass [`FilePath::parse`].
    pub fn apply(self, name: &str) -> String {
        match self {
            PathTranslation::Replace(c) => name.replace('/', c.encode_utf8(&mut [0; 4])),
            PathTranslation::Off => name.trim_start_matches('/').to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_and_nested_names() {
        for ok in [
            "db",
            "db-pass",
            "a/b/c",
            "arn:aws:secretsmanager:us-east-1:1:secret:x",
            ".hidden",
            "a.b",
            "a..b",
        ] {
            assert_eq!(FilePath::parse(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn refuses_each_rule_with_its_reason() {
        let cases = [
            ("", PathRule::Empty),
            ("a\0b", PathRule::Nul),
            ("/etc/passwd", PathRule::Absolute),
            ("a//b", PathRule::EmptyComponent),
            ("a/", PathRule::EmptyComponent),
            (".", PathRule::DotComponent),
            ("..", PathRule::DotComponent),
            ("../x", PathRule::DotComponent),
            ("a/../../x", PathRule::DotComponent),
            ("a/./b", PathRule::DotComponent),
            ("..data", PathRule::Reserved),
            ("a/..2026_01_01", PathRule::Reserved),
        ];
        for (name, rule) in cases {
            assert_eq!(FilePath::parse(name), Err(rule), "{name:?}");
        }
        assert_eq!(
            FilePath::parse(&"x".repeat(256)),
            Err(PathRule::ComponentTooLong)
        );
        assert!(FilePath::parse(&"x".repeat(255)).is_ok());
        let long = vec!["y".repeat(200); 6].join("/");
        assert_eq!(FilePath::parse(&long), Err(PathRule::TooLong));
    }

    #[test]
    fn overlap_means_one_path_is_a_directory_of_the_other() {
        let p = |s| FilePath::parse(s).unwrap();
        assert!(p("a").overlaps(&p("a")));
        assert!(p("a").overlaps(&p("a/b")));
        assert!(p("a/b/c").overlaps(&p("a/b")));
        assert!(!p("a").overlaps(&p("ab")));
        assert!(!p("a/b").overlaps(&p("a/c")));
        assert!(!p("ab/c").overlaps(&p("a")));
    }

    #[test]
    fn translation_matches_the_aws_provider() {
        assert_eq!(PathTranslation::Replace('_').apply("/prod/db"), "_prod_db");
        assert_eq!(
            PathTranslation::Replace('-').apply("mypath/TestSecret1"),
            "mypath-TestSecret1"
        );
        assert_eq!(PathTranslation::Off.apply("//prod/db"), "prod/db");
        assert_eq!(PathTranslation::Replace('é').apply("a/b"), "aéb");
    }

    #[test]
    fn top_is_the_first_component() {
        assert_eq!(FilePath::parse("a/b").unwrap().top(), "a");
        assert_eq!(FilePath::parse("a").unwrap().top(), "a");
    }
}
