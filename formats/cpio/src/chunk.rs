//! Where the chunked xz and gzip writers may cut a newc archive: at entry
//! ends, found by walking the headers of the bytes themselves.
//!
//! The xz and gzip writers ([`crate::compress_with`]) compress an archive
//! as independent, content-defined chunks so that, after a small edit,
//! only the chunks around it need compressing again; the others come from
//! a [`crate::ChunkCache`]. The cut policy (and its version, part of every
//! chunk key) is `v6build_compress::chunk`'s; this module supplies the
//! records it cuts between: each newc entry, named by its file name. The
//! archive is what we just wrote; anything that does not parse as newc,
//! such as the data after the last entry we can follow, is left as one
//! opaque tail.

use v6build_compress::chunk::Record;

use crate::newc::{HEADER_LEN, RawHeader, TRAILER, align4};

/// Walks newc headers from the start of `data` (several concatenated
/// archives too) and returns each entry as a record. The NULs after a
/// trailer belong to the trailer. Stops at the first thing that is not a
/// complete newc entry; what follows is left to the cutter as opaque bytes.
pub(crate) fn newc_records(data: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut pos = 0usize;
    while let Some(h) = data.get(pos..pos.saturating_add(HEADER_LEN)) {
        // OK to unwrap: the slice is exactly HEADER_LEN long.
        let Ok(hdr) = RawHeader::parse(h.try_into().unwrap()) else {
            break;
        };
        let (Ok(namesize), Ok(filesize)) = (
            usize::try_from(hdr.c_namesize),
            usize::try_from(hdr.c_filesize),
        ) else {
            break;
        };
        let name_start = pos + HEADER_LEN;
        let Some(name) = name_start
            .checked_add(namesize)
            .and_then(|e| data.get(name_start..e))
        else {
            break;
        };
        let Some(end) = align4(name_start + namesize)
            .and_then(|d| d.checked_add(filesize))
            .and_then(align4)
            .filter(|&e| e <= data.len())
        else {
            break;
        };
        let mut end = end;
        if name.strip_suffix(b"\0").unwrap_or(name) == TRAILER {
            while data.get(end) == Some(&0) {
                end += 1;
            }
        }
        out.push(Record::named(end, name));
        pos = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ops::Range;

    fn chunks(data: &[u8], target: usize) -> Vec<Range<usize>> {
        v6build_compress::chunk::cut(data.len(), &newc_records(data), target)
    }

    /// A newc archive of `sizes.len()` files, by hand; returns it and the
    /// offsets where entries end.
    fn archive(files: &[(String, usize)]) -> (Vec<u8>, Vec<usize>) {
        let mut v = Vec::new();
        let mut ends = Vec::new();
        let entry = |v: &mut Vec<u8>, name: &[u8], size: usize| {
            let h = RawHeader {
                c_mode: 0o100644,
                c_nlink: 1,
                c_filesize: u32::try_from(size).unwrap(),
                c_namesize: u32::try_from(name.len() + 1).unwrap(),
                ..RawHeader::default()
            };
            h.encode(v);
            v.extend_from_slice(name);
            v.push(0);
            v.resize(align4(v.len()).unwrap(), 0);
            v.extend((0..size).map(|i| u8::try_from(i % 251).unwrap()));
            v.resize(align4(v.len()).unwrap(), 0);
        };
        for (name, size) in files {
            entry(&mut v, name.as_bytes(), *size);
            ends.push(v.len());
        }
        entry(&mut v, TRAILER, 0);
        v.resize(v.len().div_ceil(512) * 512, 0);
        ends.push(v.len());
        (v, ends)
    }

    #[test]
    fn cuts_fall_on_entry_ends_and_survive_an_insertion() {
        let files: Vec<(String, usize)> = (0..3000)
            .map(|i| (format!("f{i:04}"), (i * 7919) % 5000))
            .collect();
        let (data, ends) = archive(&files);
        let c = chunks(&data, 64 << 10);
        assert!(c.len() > 20, "{} chunks", c.len());
        for r in &c {
            assert!(
                ends.contains(&r.end),
                "cut at {} is not an entry end",
                r.end
            );
            assert!(r.len() >= 32 << 10 || r.end == data.len());
        }
        // Insert a file early on: all but a few chunks keep their bytes
        // (the last one holds the trailer, whose padding moves).
        let mut files2 = files.clone();
        files2.insert(100, ("f0100-new".to_string(), 1234));
        let (data2, _) = archive(&files2);
        let set: std::collections::HashSet<&[u8]> = c.iter().map(|r| &data[r.clone()]).collect();
        let c2 = chunks(&data2, 64 << 10);
        let changed = c2
            .iter()
            .filter(|r| !set.contains(&data2[(*r).clone()]))
            .count();
        assert!(
            (1..=3).contains(&changed),
            "{changed} of {} chunks changed",
            c2.len()
        );
    }

    #[test]
    fn a_big_entry_is_split_from_its_start() {
        let files = [("a", 10), ("big", 1 << 20), ("z", 10)].map(|(n, s)| (n.to_string(), s));
        let (data, ends) = archive(&files);
        let c = chunks(&data, 64 << 10);
        // The cut before the big entry, pieces of exactly 64 KiB from its
        // start, the rest of it, then the small file and the trailer.
        assert_eq!(c[0].end, ends[0]);
        let n = c.len();
        for r in &c[1..n - 2] {
            assert_eq!(r.len(), 64 << 10);
        }
        assert_eq!(c[n - 2].end, ends[1]);
        assert_eq!(c[n - 1].end, data.len());
    }
}
