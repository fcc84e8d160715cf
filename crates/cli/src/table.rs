//! Plain-text tables for the commands that print rows (`audit query`, `audit sinks`,
//! `usage report`): columns as wide as their widest cell, two spaces apart.

/// Prints `header` and `rows` as aligned columns.
pub fn print(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &mut dyn Iterator<Item = &str>| {
        let mut out = String::new();
        for (c, w) in cols.zip(&widths) {
            out.push_str(c);
            out.extend(std::iter::repeat_n(' ', w - c.chars().count() + 2));
        }
        println!("{}", out.trim_end());
    };
    line(&mut header.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
}
