//! "Did you mean" suggestions by edit distance, as `just` and `cargo` do.

/// Edit distance over chars where swapping two adjacent characters counts
/// as one edit (optimal string alignment), since `fiel` for `file` is the
/// most common typo of all.
pub(crate) fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    // d[i][j]: distance between a[..i] and b[..j].
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut v = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                v = v.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = v;
        }
    }
    d[a.len()][b.len()]
}

/// The closest candidate, if it is close enough to be a likely typo: at most
/// a third of the word's length away (so one- and two-letter words get no
/// suggestion: anything is two edits from them).
/// Ties go to the earliest candidate, so suggestions are deterministic.
pub(crate) fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    let limit = word.chars().count() / 3;
    let mut best: Option<(usize, &'a str)> = None;
    for c in candidates {
        let d = edit_distance(word, c);
        if d <= limit && best.is_none_or(|(bd, _)| d < bd) {
            best = Some((d, c));
        }
    }
    best.map(|(_, c)| c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("", "", 0),
            ("file", "file", 0),
            ("fiel", "file", 1),
            ("flie", "file", 1),
            ("layre", "layer", 1),
            ("mod", "mode", 1),
            ("kitten", "sitting", 3),
            ("", "abc", 3),
        ] {
            assert_eq!(edit_distance(a, b), d, "{a} -> {b}");
        }
    }

    #[test]
    fn suggestions() {
        let names = ["file", "dir", "symlink", "systemd-enable"];
        assert_eq!(did_you_mean("fil", names), Some("file"));
        assert_eq!(did_you_mean("simlink", names), Some("symlink"));
        assert_eq!(
            did_you_mean("systemd-enabel", names),
            Some("systemd-enable")
        );
        assert_eq!(did_you_mean("wholly-different", names), None);
        assert_eq!(did_you_mean("x", ["y", "z"]), None);
        assert_eq!(did_you_mean("mod", ["mode", "uid"]), Some("mode"));
    }
}
