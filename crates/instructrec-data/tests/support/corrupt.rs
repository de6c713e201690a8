//! Corruptions of a valid input file, shared by the fuzz tests of every crate that parses
//! outside input (included with `#[path]`): random bytes, a cut, a last row cut short, spliced
//! junk, one token swapped for a wrong type, a number that overflows its type or bytes that are
//! not UTF-8, a dropped or repeated line, a line repeated with another value (a key given twice),
//! a truncated gzip stream, a missing file.

use std::io::Write;

use proptest::prelude::*;

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Values that are wrong in some way wherever a token of a valid file stood.
const NASTY: &[&[u8]] = &[
    b"",
    b"-1",
    b"0",
    b"4294967296",
    b"99999999999999999999999999",
    b"-9223372036854775809",
    b"9223372036854775808",
    b"1e30",
    b"1e39",
    b"1e400",
    b"NaN",
    b"inf",
    b"-inf",
    b"null",
    b"true",
    b"[]",
    b"{}",
    b"[[[[[[[[[[",
    b"\"\"",
    b"\" \"",
    b"\"\\u0000\"",
    b"\"\\ud800\"",
    b"\xff\xfe",
    b"\xc3",
    b"\t",
    b"\n",
    b":",
    b"\"",
    b"&#xffffffff;",
    b"&#0;",
    b"\xe2\x80\xae",
];

#[derive(Debug, Clone)]
pub enum Corruption {
    /// The whole file replaced by these bytes.
    Random(Vec<u8>),
    /// Cut at this fraction of its length.
    Truncate(f64),
    /// The last line cut at this fraction of its length, with no line break after it (a copy
    /// or download that stopped mid-row).
    TruncateLastRow(f64),
    /// These bytes inserted at this fraction of its length.
    Splice(f64, Vec<u8>),
    /// The n-th token (a run of letters, digits and dots) replaced by a nasty value.
    Token(usize, usize),
    /// The n-th line removed.
    DropLine(usize),
    /// The n-th line repeated.
    RepeatLine(usize),
    /// The n-th line repeated right after itself with its m-th token replaced by a nasty value:
    /// a key given twice with different values.
    RepeatLineChanged(usize, usize, usize),
    /// Gzip-compressed, then cut at this fraction (a truncated download).
    TruncatedGzip(f64),
    /// The file removed.
    Missing,
}

pub fn corruption() -> impl Strategy<Value = Corruption> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Corruption::Random),
        (0.0..1.0f64).prop_map(Corruption::Truncate),
        (0.0..1.0f64).prop_map(Corruption::TruncateLastRow),
        (0.0..1.0f64, proptest::collection::vec(any::<u8>(), 1..20))
            .prop_map(|(at, b)| Corruption::Splice(at, b)),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(n, v)| Corruption::Token(n, v)),
        (any::<usize>(), 0..NASTY.len()).prop_map(|(n, v)| Corruption::Token(n, v)),
        any::<usize>().prop_map(Corruption::DropLine),
        any::<usize>().prop_map(Corruption::RepeatLine),
        (any::<usize>(), any::<usize>(), 0..NASTY.len())
            .prop_map(|(n, m, v)| Corruption::RepeatLineChanged(n, m, v)),
        (0.0..1.0f64).prop_map(Corruption::TruncatedGzip),
        Just(Corruption::Missing),
    ]
}

fn at(fraction: f64, len: usize) -> usize {
    ((fraction * len as f64) as usize).min(len)
}

/// `content` with its n-th token (a run of letters, digits and dots) replaced by a nasty value.
fn replace_token(content: &[u8], n: usize, v: usize) -> Vec<u8> {
    let is_token = |b: u8| b.is_ascii_alphanumeric() || b == b'.';
    let mut tokens = Vec::new();
    let mut start = None;
    for (i, &b) in content.iter().chain(std::iter::once(&b' ')).enumerate() {
        match (start, is_token(b)) {
            (None, true) => start = Some(i),
            (Some(s), false) => {
                tokens.push(s..i);
                start = None;
            }
            _ => {}
        }
    }
    let mut out = content.to_vec();
    if !tokens.is_empty() {
        out.splice(
            tokens[n % tokens.len()].clone(),
            NASTY[v % NASTY.len()].iter().copied(),
        );
    }
    out
}

/// The corrupted content, or `None` for a removed file.
pub fn corrupt(content: &[u8], how: &Corruption) -> Option<Vec<u8>> {
    let mut out = content.to_vec();
    match how {
        Corruption::Random(bytes) => out = bytes.clone(),
        Corruption::Truncate(f) => out.truncate(at(*f, content.len())),
        Corruption::Splice(f, bytes) => {
            let i = at(*f, content.len());
            out.splice(i..i, bytes.iter().copied());
        }
        Corruption::TruncateLastRow(f) => {
            let body = content.strip_suffix(b"\n").unwrap_or(content);
            let start = body.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
            out.truncate(start + at(*f, body.len() - start));
        }
        Corruption::Token(n, v) => out = replace_token(content, *n, *v),
        Corruption::DropLine(n) | Corruption::RepeatLine(n) => {
            let mut lines: Vec<&[u8]> = content.split_inclusive(|&b| b == b'\n').collect();
            if !lines.is_empty() {
                let i = n % lines.len();
                if matches!(how, Corruption::DropLine(_)) {
                    lines.remove(i);
                } else {
                    lines.insert(i, lines[i]);
                }
            }
            out = lines.concat();
        }
        Corruption::RepeatLineChanged(n, m, v) => {
            let mut lines: Vec<Vec<u8>> = content
                .split_inclusive(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect();
            if !lines.is_empty() {
                let i = n % lines.len();
                let copy = replace_token(&lines[i], *m, *v);
                // The last line may have no break to separate it from its copy.
                if !lines[i].ends_with(b"\n") {
                    lines[i].push(b'\n');
                }
                lines.insert(i + 1, copy);
            }
            out = lines.concat();
        }
        Corruption::TruncatedGzip(f) => {
            out = gzip(content);
            out.truncate(at(*f, out.len()));
        }
        Corruption::Missing => return None,
    }
    Some(out)
}
