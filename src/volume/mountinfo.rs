//! Reading `/proc/self/mountinfo`: which mounts exist, of what type, from
//! which source and with which options.

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountEntry {
    /// The mount's id (`mnt_id` in /proc/self/fdinfo).
    pub id: u64,
    pub mount_point: PathBuf,
    pub fs_type: String,
    /// The source the mount was made with (`tmpfs`, a device, ...).
    pub source: String,
    /// Per-mount options (`rw,nosuid,nodev,noexec,relatime`).
    pub options: String,
}

impl MountEntry {
    pub fn has_option(&self, option: &str) -> bool {
        self.options.split(',').any(|o| o == option)
    }
}

/// Parses mountinfo text (proc(5)). Lines that do not parse are skipped.
pub fn parse_mountinfo(text: &str) -> Vec<MountEntry> {
    text.lines().filter_map(parse_line).collect()
}

/// The mount with this id, if the text lists it. Only its line is parsed
/// into owned fields: a republish asks this of a table with a line per
/// mounted volume, and parsing them all was the driver's busiest allocator.
pub(super) fn find_mount(text: &str, id: u64) -> Option<MountEntry> {
    text.lines()
        .filter(|line| line.split(' ').next().and_then(|f| f.parse::<u64>().ok()) == Some(id))
        .find_map(parse_line)
}

fn parse_line(line: &str) -> Option<MountEntry> {
    let (left, right) = line.split_once(" - ")?;
    let mut fields = left.split(' ');
    let id = fields.next()?.parse().ok()?;
    let mount_point = fields.nth(3)?;
    let options = fields.next()?;
    let mut right = right.split(' ');
    let fs_type = right.next()?;
    let source = right.next().unwrap_or_default();
    Some(MountEntry {
        id,
        mount_point: PathBuf::from(unescape(mount_point)),
        fs_type: fs_type.to_owned(),
        source: unescape(source),
        options: options.to_owned(),
    })
}

/// The kernel writes space, tab, newline and backslash as `\ooo` octal.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && i + 3 < bytes.len()
            && bytes[i + 1..i + 4]
                .iter()
                .all(|b| (b'0'..=b'7').contains(b))
        {
            let v = (bytes[i + 1] - b'0') as u32 * 64
                + (bytes[i + 2] - b'0') as u32 * 8
                + (bytes[i + 3] - b'0') as u32;
            out.push(v as u8);
            i += 4;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_mount_point_type_source_and_options() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    97 29 0:45 / /var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/s/mount rw,nosuid,nodev,noexec,relatime shared:50 - tmpfs aws-secrets-csi rw,size=4096k,mode=755\n\
                    98 29 0:46 / /tmp/with\\040space rw - tmpfs tmpfs rw\n\
                    garbage line\n";
        let entries = parse_mountinfo(text);
        assert_eq!(entries.len(), 3);
        let e = &entries[1];
        assert_eq!(e.id, 97);
        assert_eq!(
            e.mount_point,
            PathBuf::from("/var/lib/kubelet/pods/x/volumes/kubernetes.io~csi/s/mount")
        );
        assert_eq!(e.fs_type, "tmpfs");
        assert_eq!(e.source, "aws-secrets-csi");
        assert!(e.has_option("noexec") && e.has_option("nodev") && e.has_option("nosuid"));
        assert!(!e.has_option("no"));
        assert_eq!(entries[2].mount_point, PathBuf::from("/tmp/with space"));
        assert_eq!(entries[2].source, "tmpfs");
    }

    #[test]
    fn finds_one_mount_by_id_as_the_full_parse_does() {
        let text = "22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
                    garbage line\n\
                    97 29 0:45 / /a/mount rw,nosuid,nodev,noexec - tmpfs aws-secrets-csi rw\n\
                    970 29 0:46 / /b rw - tmpfs tmpfs rw\n\
                    98 97 0:47 / /a/mount/x rw - tmpfs x rw\n";
        for entry in parse_mountinfo(text) {
            assert_eq!(find_mount(text, entry.id), Some(entry));
        }
        // An id is matched whole, not as a prefix or as a parent id.
        assert_eq!(find_mount(text, 9), None);
        assert_eq!(find_mount(text, 29), None);
        assert_eq!(
            find_mount(text, 97).unwrap().mount_point,
            PathBuf::from("/a/mount")
        );
        assert_eq!(find_mount("", 1), None);
    }

    #[test]
    fn unescapes_octal_sequences_only() {
        assert_eq!(unescape("a\\134b"), "a\\b");
        assert_eq!(unescape("a\\011b\\012"), "a\tb\n");
        assert_eq!(unescape("a\\9"), "a\\9");
        assert_eq!(unescape("trail\\"), "trail\\");
    }
}
