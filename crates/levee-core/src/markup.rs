//! Escaping text for HTML and XML that Levee writes itself (the status
//! page, its Atom feed, JUnit reports): one function, so every document
//! stays well-formed whatever operators or users put in a title.

/// `s` with `<`, `>`, `&`, `"` and `'` as character references (`&#39;`
/// reads the same in HTML and XML), and control characters other than tab,
/// line feed and carriage return left out (XML 1.0 allows none of them).
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn markup_and_control_characters() {
        assert_eq!(
            super::escape("<a href='x'>&\"</a>"),
            "&lt;a href=&#39;x&#39;&gt;&amp;&quot;&lt;/a&gt;"
        );
        assert_eq!(super::escape("a\u{0}b\u{1b}c\td\n"), "abc\td\n");
        assert_eq!(super::escape("héllo ✓"), "héllo ✓");
    }
}
