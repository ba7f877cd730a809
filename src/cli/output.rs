//! Human-readable output: aligned tables and byte sizes.

/// Print rows as left-aligned columns under a header, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut out = String::new();
        for (i, (cell, width)) in cells.iter().zip(&widths).enumerate() {
            if i + 1 == cells.len() {
                out.push_str(cell);
            } else {
                out.push_str(&format!("{cell:<width$}  "));
            }
        }
        println!("{}", out.trim_end());
    };
    line(header.to_vec());
    for row in rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// `1.5GiB`-style sizes; exact small values stay in bytes.
pub fn bytes(value: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut scaled = value as f64;
    let mut unit = 0;
    while scaled >= 1024.0 && unit + 1 < UNITS.len() {
        scaled /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{value}B")
    } else if scaled.fract() == 0.0 {
        format!("{scaled:.0}{}", UNITS[unit])
    } else {
        format!("{scaled:.1}{}", UNITS[unit])
    }
}

/// A limit where 0 means none.
pub fn limit(value: u64, render: impl Fn(u64) -> String) -> String {
    if value == 0 { "unlimited".to_owned() } else { render(value) }
}

/// "none" for an empty value.
pub fn or_none(value: &str) -> &str {
    if value.is_empty() { "none" } else { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_limits() {
        assert_eq!(bytes(512), "512B");
        assert_eq!(bytes(512 << 20), "512MiB");
        assert_eq!(bytes(1536 << 20), "1.5GiB");
        assert_eq!(limit(0, bytes), "unlimited");
    }
}
