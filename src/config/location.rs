//! Turning byte offsets in a TOML source into what a person needs: `line:column` and the
//! dotted key path (`listeners[1].routes[0].sni`).
//!
//! Invariants: pure functions over the source text; never panic on any offset (offsets past
//! the end are clamped). The key path is reconstructed from table headers and `key =` prefixes
//! line by line, which is exact for the block-table style fedgate documents and a best effort
//! for inline tables.

use std::collections::HashMap;

/// 1-based line and column (in characters) of byte `offset` in `src`.
pub fn line_col(src: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(src.len());
    while !src.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = &src[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = src[line_start..offset].chars().count() + 1;
    (line, column)
}

/// The dotted key path of the value or key at byte `offset`, e.g. `listeners[0].peek_timeout`.
/// Returns the enclosing table's path when the offset is on a header line.
pub fn key_path_at(src: &str, offset: usize) -> String {
    let (target_line, _) = line_col(src, offset);
    // Index of the current element of each array of tables, keyed by its dotted name.
    let mut indices: HashMap<String, usize> = HashMap::new();
    let mut table = String::new();
    let mut key = None;
    for (i, raw) in src.lines().enumerate() {
        let line = raw.trim();
        if let Some(name) = line.strip_prefix("[[").and_then(|l| l.split("]]").next()) {
            let name = normalize(name);
            let next = indices.get(&name).map_or(0, |i| i + 1);
            let prefix = format!("{name}.");
            indices.retain(|k, _| !k.starts_with(&prefix));
            indices.insert(name.clone(), next);
            table = render(&name, &indices);
            key = None;
        } else if let Some(name) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            table = render(&normalize(name), &indices);
            key = None;
        } else if let Some((k, _)) = line.split_once('=') {
            if !line.starts_with('#') {
                key = Some(k.trim().trim_matches('"').to_string());
            }
        }
        if i + 1 == target_line {
            break;
        }
    }
    match (table.is_empty(), key) {
        (_, None) => table,
        (true, Some(k)) => k,
        (false, Some(k)) => format!("{table}.{k}"),
    }
}

fn normalize(name: &str) -> String {
    name.split('.')
        .map(|s| s.trim().trim_matches('"'))
        .collect::<Vec<_>>()
        .join(".")
}

/// `listeners.routes` with indices {listeners: 1, listeners.routes: 0} → `listeners[1].routes[0]`.
fn render(name: &str, indices: &HashMap<String, usize>) -> String {
    let mut out = String::new();
    let mut cumulative = String::new();
    for (n, seg) in name.split('.').enumerate() {
        if n > 0 {
            out.push('.');
            cumulative.push('.');
        }
        cumulative.push_str(seg);
        out.push_str(seg);
        if let Some(i) = indices.get(&cumulative) {
            out.push_str(&format!("[{i}]"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "trust_domain = \"a.test\"\n\
        [admin]\n\
        listen = \"x\"\n\
        [[listeners]]\n\
        name = \"one\"\n\
          [[listeners.routes]]\n\
          sni = \"a\"\n\
        [[listeners]]\n\
        name = \"two\"\n\
          [[listeners.routes]]\n\
          sni = \"b\"\n\
          [[listeners.routes]]\n\
          sni = \"c\"\n";

    fn offset_of(needle: &str) -> usize {
        SRC.find(needle).unwrap()
    }

    #[test]
    fn line_and_column() {
        assert_eq!(line_col(SRC, 0), (1, 1));
        assert_eq!(line_col(SRC, offset_of("\"x\"")), (3, 10));
        assert_eq!(line_col(SRC, usize::MAX).0, 14);
        assert_eq!(line_col("é", 1), (1, 1));
    }

    #[test]
    fn key_paths() {
        assert_eq!(key_path_at(SRC, offset_of("\"a.test\"")), "trust_domain");
        assert_eq!(key_path_at(SRC, offset_of("\"x\"")), "admin.listen");
        assert_eq!(key_path_at(SRC, offset_of("\"one\"")), "listeners[0].name");
        assert_eq!(
            key_path_at(SRC, offset_of("\"a\"")),
            "listeners[0].routes[0].sni"
        );
        assert_eq!(key_path_at(SRC, offset_of("\"two\"")), "listeners[1].name");
        assert_eq!(
            key_path_at(SRC, offset_of("\"b\"")),
            "listeners[1].routes[0].sni"
        );
        assert_eq!(
            key_path_at(SRC, offset_of("\"c\"")),
            "listeners[1].routes[1].sni"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(src in "\\PC{0,200}", offset in 0usize..300) {
            let _ = line_col(&src, offset);
            let _ = key_path_at(&src, offset);
        }
    }
}
