//! The patch corpus: parsing, exact and fuzzy application, creation,
//! deletion, missing newlines, and the pinned failure message.

use v6build_fstree::{MemBlobs, Tree};

use super::*;
use crate::ops::testutil::*;
use crate::ops::{OpError, OpReport};

fn opts(strip: usize, dir: &str, fuzz: Option<usize>) -> ApplyOptions {
    ApplyOptions {
        strip,
        dir: p(dir),
        fuzz,
    }
}

fn run(t: &mut Tree, blobs: &MemBlobs, patch: &str, o: &ApplyOptions) -> Result<OpReport, OpError> {
    let parsed = parse(patch.as_bytes())?;
    apply(t, blobs, &CTX, &parsed, o)
}

const SEVEN: &str = "f /src/a.txt 1\\n2\\n3\\n4\\n5\\n6\\n7\\n8\\n9\\n10\\n";

#[test]
fn parse_plain_and_git_headers() {
    let patch = "From: someone\nSubject: fix\n\n\
diff --git a/x/one.c b/x/one.c\n\
index 83db48f..bf269f4 100644\n\
--- a/x/one.c\n\
+++ b/x/one.c\n\
@@ -1,2 +1,2 @@ int main()\n\
\x20a\n\
-b\n\
+B\n\
diff --git a/new.sh b/new.sh\n\
new file mode 100755\n\
index 0000000..e69de29\n\
--- x/two.c\t2024-01-01 00:00:00.000000000 +0000\n\
+++ x/two.c\t2024-01-02 00:00:00.000000000 +0000\n\
@@ -1 +1 @@\n\
-old\n\
\\ No newline at end of file\n\
+new\n\
--- /dev/null\n\
+++ b/made\n\
@@ -0,0 +1 @@\n\
+hi\n\
diff --git \"a/sp ace\" \"b/sp ace\"\n\
deleted file mode 100644\n\
-- \n2.40.0\n";
    let parsed = parse(patch.as_bytes()).unwrap();
    type Row = (Option<String>, Option<String>, Option<u16>, usize);
    let names: Vec<Row> = parsed
        .files
        .iter()
        .map(|f| {
            let s = |n: &Option<Vec<u8>>| n.as_ref().map(|n| String::from_utf8(n.clone()).unwrap());
            (s(&f.old_name), s(&f.new_name), f.new_mode, f.hunks.len())
        })
        .collect();
    assert_eq!(
        names,
        [
            (Some("a/x/one.c".into()), Some("b/x/one.c".into()), None, 1),
            (None, Some("b/new.sh".into()), Some(0o755), 0),
            (Some("x/two.c".into()), Some("x/two.c".into()), None, 1),
            (None, Some("b/made".into()), None, 1),
            (Some("a/sp ace".into()), None, None, 0),
        ]
    );
    let h = &parsed.files[0].hunks[0];
    assert_eq!(h.header, "@@ -1,2 +1,2 @@");
    assert_eq!(
        (h.old_start, h.old_len, h.new_start, h.new_len),
        (1, 2, 1, 2)
    );
    assert_eq!(h.line, 8);
    let h = &parsed.files[2].hunks[0];
    assert!(h.lines[0].no_newline && h.lines[0].kind == LineKind::Remove);
    assert!(!h.lines[1].no_newline);
}

#[test]
fn parse_errors() {
    let cases: &[(&str, &str)] = &[
        ("", "patch line 1: no file patches found"),
        ("just words\n", "patch line 1: no file patches found"),
        (
            "@@ -1 +1 @@\n-a\n+b\n",
            "patch line 1: hunk without a `---`/`+++` file header",
        ),
        (
            "--- a\n+++ b\nnot a hunk\n",
            "patch line 1: file header without any `@@` hunk",
        ),
        (
            "--- a\n+++ b\n@@ -1,2 +1,2 @@\n a\n",
            "patch line 5: hunk @@ -1,2 +1,2 @@ ends early: 1 old and 1 new line(s) still expected",
        ),
        (
            "--- a\n+++ b\n@@ -1 +1,2 @@\n-a\n-b\n",
            "patch line 5: hunk has more lines than its header says",
        ),
        (
            "--- a\n+++ b\n@@ -x +1 @@\n",
            "patch line 3: bad number in hunk header",
        ),
        (
            "--- a\n+++ b\n@@ -1 +1\n",
            "patch line 3: bad hunk header (want `@@ -a,b +c,d @@`)",
        ),
        (
            "--- a\n+++ b\n@@ -0,1 +1 @@\n-a\n+b\n",
            "patch line 3: hunk range starts at line 0 but is not empty",
        ),
        (
            "--- a\n+++ b\n@@ -1 +1 @@\n\\ No newline at end of file\n-a\n+b\n",
            "patch line 4: `\\ No newline at end of file` without a line before it",
        ),
        (
            "--- a\n+++ b\n@@ -1,2 +1,2 @@\n-a\n\\ No newline at end of file\n-b\n+c\n+d\n",
            "patch line 3: a line without a newline is not the last old line of the hunk",
        ),
        (
            "--- a\n+++ b\n@@ -99999999999999999999 +1 @@\n",
            "patch line 3: bad number in hunk header",
        ),
        (
            "diff --git a/x b/y\nsimilarity index 90%\nrename from x\nrename to y\n",
            "patch line 1: a git rename is not supported",
        ),
        (
            "diff --git a/x b/x\nold mode 100644\nnew mode 100755\n",
            "patch line 1: a git diff without content changes (a mode change?) is not supported; use chmod",
        ),
        (
            "diff --git a/x b/x\nindex 1..2\nBinary files a/x and b/x differ\n",
            "patch line 1: a binary patch is not supported",
        ),
        (
            "diff --git a/x b/x\nnew file mode 120000\n",
            "patch line 2: a git file mode that is not a regular file is not supported",
        ),
    ];
    for (patch, want) in cases {
        let e = parse(patch.as_bytes()).unwrap_err();
        assert_eq!(e.to_string(), *want, "{patch:?}");
    }
}

#[test]
fn parse_never_panics_on_mangled_input() {
    let corpus: &[&[u8]] = &[
        b"--- a/f\n+++ b/f\n@@ -1,3 +1,3 @@\n a\n-b\n+c\n d\n\\ No newline at end of file\n",
        b"diff --git \"a/q\\001\" \"b/q\\001\"\nnew file mode 100644\n--- /dev/null\n+++ \"b/q\\001\"\n@@ -0,0 +1 @@\n+x\n",
        b"--- a\t2020\n+++ b\t2020\n@@ -1 +1 @@\n-\xff\n+\xfe\r\n",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    for base in corpus {
        for cut in 0..=base.len() {
            let _ = parse(&base[..cut]);
        }
        for _ in 0..2000 {
            let mut v = base.to_vec();
            for _ in 0..3 {
                seed = seed
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let i = usize::try_from(seed >> 33).unwrap() % v.len();
                let b = u8::try_from((seed >> 20) & 0xff).unwrap();
                match seed % 3 {
                    0 => v[i] = b,
                    1 => v.insert(i, b"-+ @\\\n,0123456789\"/"[usize::from(b) % 18]),
                    _ => {
                        v.remove(i);
                    }
                }
                if v.is_empty() {
                    v.push(b'\n');
                }
            }
            let _ = parse(&v);
        }
    }
}

#[test]
fn modify_multi_hunk_exact() {
    let (mut t, blobs) = build(&[SEVEN]);
    let patch = "--- a/src/a.txt\n+++ b/src/a.txt\n\
@@ -1,3 +1,4 @@\n 1\n+1.5\n 2\n 3\n\
@@ -7,3 +8,2 @@\n 7\n-8\n 9\n";
    let r = run(&mut t, &blobs, patch, &opts(1, "/", None)).unwrap();
    assert_eq!(r.lines(), ["modify /src/a.txt: patched (2 hunk(s))"]);
    assert_eq!(
        read(&t, &blobs, "/src/a.txt"),
        "1\n1.5\n2\n3\n4\n5\n6\n7\n9\n10\n"
    );
    assert!(shape(&t).contains(&"-0644 0:0 1000 /src/a.txt size=23".to_string()));
}

#[test]
fn multi_file_create_delete_with_dir_and_strip() {
    let (mut t, blobs) = build(&[
        "f /opt/app/keep.txt a\\nb\\n",
        "f /opt/app/gone.txt x\\ny\\n",
        "l /app opt/app",
    ]);
    let patch = "--- x/y/keep.txt\n+++ x/y/keep.txt\n@@ -1,2 +1,2 @@\n a\n-b\n+B\n\
--- x/y/gone.txt\n+++ /dev/null\n@@ -1,2 +0,0 @@\n-x\n-y\n\
--- /dev/null\n+++ x/y/sub/new.txt\n@@ -0,0 +1,2 @@\n+n1\n+n2\n";
    let r = run(&mut t, &blobs, patch, &opts(2, "/app", None)).unwrap();
    assert_eq!(
        r.lines(),
        [
            "modify /opt/app/keep.txt: patched (1 hunk(s))",
            "remove /opt/app/gone.txt",
            "mkdir -p /opt/app/sub",
            "create file /opt/app/sub/new.txt",
        ]
    );
    assert_eq!(read(&t, &blobs, "/opt/app/keep.txt"), "a\nB\n");
    assert_eq!(read(&t, &blobs, "/opt/app/sub/new.txt"), "n1\nn2\n");
    assert!(t.get(&p("/opt/app/gone.txt")).is_none());
}

#[test]
fn git_empty_file_creation_and_deletion() {
    let (mut t, blobs) = build(&["f /e/old "]);
    let patch = "diff --git a/e/run.sh b/e/run.sh\nnew file mode 100755\nindex 0000000..e69de29\n\
diff --git a/e/old b/e/old\ndeleted file mode 100644\nindex e69de29..0000000\n";
    run(&mut t, &blobs, patch, &opts(1, "/", None)).unwrap();
    assert!(shape(&t).contains(&"-0755 0:0 1000 /e/run.sh size=0".to_string()));
    assert!(t.get(&p("/e/old")).is_none());
}

#[test]
fn no_newline_at_end_of_file() {
    // Add a newline to a file that lacks one, then take it away again.
    let (mut t, blobs) = build(&["f /f a\\nb"]);
    let add = "--- f\n+++ f\n@@ -1,2 +1,2 @@\n a\n-b\n\\ No newline at end of file\n+b\n";
    run(&mut t, &blobs, add, &opts(0, "/", None)).unwrap();
    assert_eq!(read(&t, &blobs, "/f"), "a\nb\n");
    // The same patch again no longer matches: the line now has a newline.
    let e = run(&mut t, &blobs, add, &opts(0, "/", None)).unwrap_err();
    assert!(e.to_string().contains("hunk #1"), "{e}");
    let drop = "--- f\n+++ f\n@@ -2 +2,2 @@\n-b\n+b\n+c\n\\ No newline at end of file\n";
    run(&mut t, &blobs, drop, &opts(0, "/", None)).unwrap();
    assert_eq!(read(&t, &blobs, "/f"), "a\nb\nc");
}

#[test]
fn offsets_and_fuzz_need_permission() {
    // The hunk says line 4, but the text is at line 6 (two lines were
    // inserted above it); and its first context line differs.
    let (mut t, blobs) = build(&["f /f x\\ny\\n1\\n2\\n3\\n4\\n5\\n6\\n"]);
    let offset = "--- f\n+++ f\n@@ -3,3 +3,3 @@\n 3\n-4\n+four\n 5\n";
    let e = run(&mut t, &blobs, offset, &opts(0, "/", None)).unwrap_err();
    assert!(matches!(e, OpError::HunkFailed(_)), "{e}");
    let r = run(&mut t, &blobs, offset, &opts(0, "/", Some(0))).unwrap();
    assert_eq!(
        r.lines()[1],
        "note: hunk #1 of /f applied at line 5 (offset +2 lines, fuzz 0)"
    );
    assert_eq!(read(&t, &blobs, "/f"), "x\ny\n1\n2\n3\nfour\n5\n6\n");

    let fuzzy = "--- f\n+++ f\n@@ -5,3 +5,3 @@\n THREE\n-four\n+4\n 5\n";
    let e = run(&mut t, &blobs, fuzzy, &opts(0, "/", Some(0))).unwrap_err();
    assert!(
        e.to_string()
            .contains("nor anywhere else in the file with fuzz 0"),
        "{e}"
    );
    let r = run(&mut t, &blobs, fuzzy, &opts(0, "/", Some(1))).unwrap();
    assert_eq!(
        r.lines()[1],
        "note: hunk #1 of /f applied at line 5 (offset +0 lines, fuzz 1)"
    );
    assert_eq!(read(&t, &blobs, "/f"), "x\ny\n1\n2\n3\n4\n5\n6\n");
}

#[test]
fn later_hunks_follow_the_offset_of_earlier_ones() {
    let (mut t, blobs) = build(&["f /f x\\nx\\na\\n1\\n2\\n3\\n4\\n5\\n6\\n7\\n8\\n"]);
    // Both hunks are two lines early; after the first is found, the second
    // matches at its shifted position without a search.
    let patch =
        "--- f\n+++ f\n@@ -1,3 +1,3 @@\n a\n-1\n+one\n 2\n@@ -7,3 +7,3 @@\n 6\n-7\n+seven\n 8\n";
    let r = run(&mut t, &blobs, patch, &opts(0, "/", Some(0))).unwrap();
    assert_eq!(
        r.lines(),
        [
            "modify /f: patched (2 hunk(s))",
            "note: hunk #1 of /f applied at line 3 (offset +2 lines, fuzz 0)",
        ]
    );
    assert_eq!(
        read(&t, &blobs, "/f"),
        "x\nx\na\none\n2\n3\n4\n5\n6\nseven\n8\n"
    );
}

#[test]
fn hunks_at_the_start_or_end_of_a_file_stay_anchored_there() {
    // A hunk without leading context says "this is the start of the file":
    // like GNU patch, it is not moved elsewhere until the fuzz covers the
    // missing context.
    let (mut t, blobs) = build(&["f /f x\\n1\\n2\\n3\\n"]);
    let start = "--- f\n+++ f\n@@ -1,2 +1,2 @@\n-1\n+one\n 2\n";
    let e = run(&mut t, &blobs, start, &opts(0, "/", Some(0))).unwrap_err();
    assert!(e.to_string().contains("hunk #1"), "{e}");
    run(&mut t, &blobs, start, &opts(0, "/", Some(1))).unwrap();
    assert_eq!(read(&t, &blobs, "/f"), "x\none\n2\n3\n");
    // Likewise a hunk without trailing context belongs at the end.
    let end = "--- f\n+++ f\n@@ -2,1 +2,2 @@\n one\n+more\n";
    let e = run(&mut t, &blobs, end, &opts(0, "/", Some(0))).unwrap_err();
    assert!(e.to_string().contains("hunk #1"), "{e}");
    let at_end = "--- f\n+++ f\n@@ -3,1 +3,2 @@\n 3\n+more\n";
    let r = run(&mut t, &blobs, at_end, &opts(0, "/", Some(0))).unwrap();
    assert_eq!(
        r.lines()[1],
        "note: hunk #1 of /f applied at line 4 (offset +1 lines, fuzz 0)"
    );
    assert_eq!(read(&t, &blobs, "/f"), "x\none\n2\n3\nmore\n");
}

/// The failure message is part of the user interface: pinned.
#[test]
fn failing_hunk_message_is_pinned() {
    let (mut t, blobs) = build(&[SEVEN, "f /src/b.txt b\\n"]);
    let before = shape(&t);
    let patch = "--- a/src/b.txt\n+++ b/src/b.txt\n@@ -1 +1 @@\n-b\n+B\n\
--- a/src/a.txt\n+++ b/src/a.txt\n\
@@ -1,2 +1,2 @@\n-1\n+one\n 2\n\
@@ -4,4 +4,3 @@\n 4\n-5\n six\n 7\n";
    let e = run(&mut t, &blobs, patch, &opts(1, "/", None)).unwrap_err();
    let want = "\
patch does not apply to /src/a.txt: hunk #2 `@@ -4,4 +4,3 @@` does not match at line 4 (exact match required; fuzz is not enabled)
expected:
     4   4
     5 - 5
     6   six
     7   7
found:
     4   4
     5   5
     6 ! 6
     7   7";
    assert_eq!(e.to_string(), want);
    // Nothing changed, not even the file patched before the failure.
    assert_eq!(shape(&t), before);

    // Past the end of the file.
    let patch = "--- a/src/a.txt\n+++ b/src/a.txt\n@@ -9,3 +9,3 @@\n 9\n 10\n-11\n+eleven\n";
    let e = run(&mut t, &blobs, patch, &opts(1, "/", None)).unwrap_err();
    let want = "\
patch does not apply to /src/a.txt: hunk #1 `@@ -9,3 +9,3 @@` does not match at line 9 (exact match required; fuzz is not enabled)
expected:
     9   9
    10   10
    11 - 11
found:
     9   9
    10   10
       (end of file after line 10)";
    assert_eq!(e.to_string(), want);
}

#[test]
fn file_level_errors() {
    let (mut t, blobs) = build(&["f /a x\\n", "d /d", "l /l a", "f /del x\\ny\\n"]);
    let cases: &[(&str, &str)] = &[
        (
            "--- /dev/null\n+++ a\n@@ -0,0 +1 @@\n+x\n",
            "patch of /a: the patch creates it, but it already exists",
        ),
        ("--- m\n+++ m\n@@ -1 +1 @@\n-x\n+y\n", "/m does not exist"),
        ("--- d\n+++ d\n@@ -1 +1 @@\n-x\n+y\n", "/d is a directory"),
        (
            "--- del\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
            "patch of /del: the patch deletes it, but 2 byte(s) are left after its hunks",
        ),
        (
            "--- l\n+++ /dev/null\n@@ -1 +0,0 @@\n-x\n",
            "/l is a symlink, not a regular file",
        ),
        (
            "--- a/../../etc/passwd\n+++ b/../../etc/passwd\n@@ -1 +1 @@\n-x\n+y\n",
            "patch file name `b/../../etc/passwd` with strip=1: `..` is not allowed as a name",
        ),
        (
            "--- a\n+++ a\n@@ -1 +1 @@\n-x\n+y\n",
            "patch file name `a` with strip=1: it has fewer than 1 leading directories",
        ),
        (
            "--- del\n+++ del\n@@ -2 +2 @@\n-y\n+Y\n@@ -1 +1 @@\n-x\n+X\n",
            "patch of /del: hunk #2 `@@ -1 +1 @@` overlaps the hunk before it or is out of order",
        ),
    ];
    for (patch, want) in cases {
        let strip = usize::from(patch.contains("etc/passwd") || patch.starts_with("--- a\n"));
        let e = run(&mut t, &blobs, patch, &opts(strip, "/", None)).unwrap_err();
        assert_eq!(e.to_string(), *want, "{patch}");
    }
    // A symlink to modify is followed, inside the image.
    run(
        &mut t,
        &blobs,
        "--- l\n+++ l\n@@ -1 +1 @@\n-x\n+y\n",
        &opts(0, "/", None),
    )
    .unwrap();
    assert_eq!(read(&t, &blobs, "/a"), "y\n");
}

#[test]
fn python_source_keeps_metadata_and_loses_bytecode() {
    let base = "/usr/lib/python2.7/site-packages/pyanaconda/packaging";
    let (mut t, blobs) = build(&[
        &format!("x {base}/__init__.py import os\\nRETRIES = 1\\n"),
        &format!("f {base}/__init__.pyc stale"),
        &format!("f {base}/__init__.pyo stale"),
        &format!("f {base}/__pycache__/__init__.cpython-36.pyc stale"),
        &format!("f {base}/other.pyc keep"),
    ]);
    crate::ops::hardlink(
        &mut t,
        &CTX,
        &p("/init-link.py"),
        &p(&format!("{base}/__init__.py")),
    )
    .unwrap();
    crate::ops::xattr_set(
        &mut t,
        &p(&format!("{base}/__init__.py")),
        b"security.selinux",
        b"l\0",
    )
    .unwrap();
    let patch = "--- a/pyanaconda/packaging/__init__.py\n+++ b/pyanaconda/packaging/__init__.py\n\
@@ -1,2 +1,2 @@\n import os\n-RETRIES = 1\n+RETRIES = 10\n";
    let r = run(
        &mut t,
        &blobs,
        patch,
        &opts(1, "/usr/lib/python2.7/site-packages", None),
    )
    .unwrap();
    assert_eq!(
        r.lines(),
        [
            format!(
                "note: {base}/__init__.py has 2 hardlinked names; the change applies to all of them"
            ),
            format!("modify {base}/__init__.py: patched (1 hunk(s))"),
            format!(
                "remove stale bytecode {base}/__init__.pyc (source {base}/__init__.py changed)"
            ),
            format!(
                "remove stale bytecode {base}/__init__.pyo (source {base}/__init__.py changed)"
            ),
            format!(
                "remove stale bytecode {base}/__pycache__/__init__.cpython-36.pyc (source {base}/__init__.py changed)"
            ),
        ]
    );
    let s = shape(&t);
    assert!(
        s.contains(&"-0755 0:0 1000 /init-link.py size=23".to_string()),
        "{s:#?}"
    );
    assert!(
        s.contains(&format!(
            "-0755 0:0 1000 {base}/__init__.py => /init-link.py"
        )),
        "{s:#?}"
    );
    assert!(s.contains(&"    xattr security.selinux=l\\x00".to_string()));
    assert_eq!(
        read(&t, &blobs, "/init-link.py"),
        "import os\nRETRIES = 10\n"
    );
    assert!(t.get(&p(&format!("{base}/other.pyc"))).is_some());
}

#[test]
fn crlf_content_is_matched_byte_for_byte() {
    let (mut t, blobs) = build(&["f /w a\r\\nb\r\\n"]);
    let patch = "--- w\n+++ w\n@@ -1,2 +1,2 @@\n a\r\n-b\r\n+c\r\n";
    run(&mut t, &blobs, patch, &opts(0, "/", None)).unwrap();
    assert_eq!(read(&t, &blobs, "/w"), "a\r\nc\r\n");
}
