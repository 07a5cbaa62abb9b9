//! The release's `.treeinfo`: the media's copy with `[stage2] mainimage`,
//! the image paths and `[checksums]` rewritten for the files this release
//! ships, as productmd lays them out. Dracut and Anaconda read it from the
//! `inst.stage2=` / `inst.repo=` URL to find the stage2 image.

/// One file the release ships, with its release-relative path and sha256.
#[derive(Debug, Clone)]
pub struct Shipped<'a> {
    /// What it is: `initrd`, `stage2`, `kernel`.
    pub role: &'a str,
    /// Release-relative path.
    pub path: &'a str,
    /// Lowercase hex sha256.
    pub sha256: &'a str,
}

/// Rewrites `text` (an INI-style `.treeinfo`) for `shipped`. Unknown
/// sections and keys are kept verbatim and in order.
pub fn rewrite(text: &str, shipped: &[Shipped<'_>]) -> String {
    let find = |role: &str| shipped.iter().find(|s| s.role == role);
    let mut out = String::new();
    let mut section = String::new();
    let mut saw_checksums = false;
    let flush_checksums = |out: &mut String| {
        let mut rows: Vec<&Shipped<'_>> = shipped.iter().collect();
        rows.sort_by_key(|s| s.path);
        for s in rows {
            out.push_str(&format!("{} = sha256:{}\n", s.path, s.sha256));
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') && trimmed.ends_with(']') {
            section = trimmed[1..trimmed.len() - 1].to_string();
            out.push_str(line);
            out.push('\n');
            if section == "checksums" {
                saw_checksums = true;
                flush_checksums(&mut out);
            }
            continue;
        }
        let Some((key, _)) = trimmed.split_once('=') else {
            out.push_str(line);
            out.push('\n');
            continue;
        };
        let key = key.trim();
        if section == "checksums" {
            continue;
        }
        let replacement = match (section.as_str(), key) {
            ("stage2", "mainimage") => find("stage2").map(|s| s.path),
            (s, "initrd") if s.starts_with("images-") => find("initrd").map(|s| s.path),
            (s, "kernel") if s.starts_with("images-") => find("kernel").map(|s| s.path),
            _ => None,
        };
        match replacement {
            Some(v) => out.push_str(&format!("{key} = {v}\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    if !saw_checksums {
        out.push_str("\n[checksums]\n");
        flush_checksums(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_images_and_checksums() {
        let text = "[header]\nversion = 1.2\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\ninitrd = images/pxeboot/initrd.img\nkernel = images/pxeboot/vmlinuz\n\n[checksums]\nimages/pxeboot/initrd.img = sha256:00\nLiveOS/squashfs.img = sha256:11\n";
        let shipped = [
            Shipped {
                role: "initrd",
                path: "initrd.img",
                sha256: "aa",
            },
            Shipped {
                role: "stage2",
                path: "LiveOS/squashfs.img",
                sha256: "bb",
            },
        ];
        let got = rewrite(text, &shipped);
        let want = "[header]\nversion = 1.2\n\n[stage2]\nmainimage = LiveOS/squashfs.img\n\n[images-x86_64]\ninitrd = initrd.img\nkernel = images/pxeboot/vmlinuz\n\n[checksums]\nLiveOS/squashfs.img = sha256:bb\ninitrd.img = sha256:aa\n";
        assert_eq!(got, want);
    }
}
