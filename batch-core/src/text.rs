//! Words that come from untrusted code or data (a plugin's refusal, trap message or stdout, a
//! record's excerpt, a location a client named) before they reach a terminal, a log line, an
//! activity failure, a workflow result or a report:
//!
//! - [`neutralised`] escapes every character that could act rather than be read: C0 and C1
//!   control characters and DEL (cursor moves, screen clears, window titles, bells, carriage
//!   returns and line breaks that would forge a line), and Unicode's bidirectional and
//!   invisible format characters (which reorder or hide what a reader sees). Each is written
//!   visibly, `\n`, `\r`, `\t` or `\u{1b}`. Neutralised text is left as it is by a second
//!   pass, so every channel may neutralise what it shows whatever was done before.
//! - [`bounded`] cuts text to a number of bytes and says so, with a note that always survives.
//! - [`shown`] does both: the one function every channel uses.

use std::borrow::Cow;
use std::fmt::Write as _;

/// The most bytes of a plugin's message kept; the rest is replaced by a note of its length.
pub const MAX_MESSAGE_BYTES: usize = 2048;

/// Whether `c` must be escaped before it is shown.
fn acts(c: char) -> bool {
    c.is_control()
        || matches!(c,
            // Bidirectional embeddings, overrides and isolates, marks.
            '\u{200e}' | '\u{200f}' | '\u{061c}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
            // Zero-width and other invisible format characters, line and paragraph separators.
            | '\u{200b}'..='\u{200d}' | '\u{2028}' | '\u{2029}' | '\u{2060}'..='\u{2064}'
            | '\u{feff}' | '\u{00ad}')
}

/// `text` with every character that could act escaped visibly (see the module's docs).
pub fn neutralised(text: &str) -> Cow<'_, str> {
    if !text.chars().any(acts) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if acts(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// `text` if it is at most `max` bytes, else its first `max` bytes (cut at a character
/// boundary) followed by `... [truncated: N bytes in all]`.
pub fn bounded(text: &str, max: usize) -> String {
    bounded_of(text, max, text.len() as u64)
}

/// `kept`, the start of a text of `total` bytes (more than `kept` when some was dropped
/// before), cut to at most `max` bytes, with a note of the total whenever anything is missing:
/// `... [truncated: 104857600 bytes in all, 4096 kept]`. The note is never cut.
pub fn bounded_of(kept: &str, max: usize, total: u64) -> String {
    if kept.len() <= max && total <= kept.len() as u64 {
        return kept.to_owned();
    }
    let mut end = max.min(kept.len());
    while !kept.is_char_boundary(end) {
        end -= 1;
    }
    if total <= kept.len() as u64 {
        format!("{}... [truncated: {total} bytes in all]", &kept[..end])
    } else {
        format!(
            "{}... [truncated: {total} bytes in all, {end} kept]",
            &kept[..end]
        )
    }
}

/// [`bounded`] at [`MAX_MESSAGE_BYTES`].
pub fn bounded_message(text: &str) -> String {
    bounded(text, MAX_MESSAGE_BYTES)
}

/// Untrusted `text` made fit to show anywhere: cut to `max` bytes, then neutralised. The one
/// function every channel uses (logs, failures, summaries, reports).
pub fn shown(text: &str, max: usize) -> String {
    neutralised(&bounded(text, max)).into_owned()
}

/// [`shown`] at [`MAX_MESSAGE_BYTES`].
pub fn shown_message(text: &str) -> String {
    shown(text, MAX_MESSAGE_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_text_is_kept_whole() {
        assert_eq!(bounded("", 4), "");
        assert_eq!(bounded("abcd", 4), "abcd");
    }

    #[test]
    fn long_text_is_cut_and_says_how_long_it_was() {
        assert_eq!(bounded("abcdef", 4), "abcd... [truncated: 6 bytes in all]");
        let huge = "x".repeat(8 << 20);
        let cut = bounded_message(&huge);
        assert!(cut.len() < MAX_MESSAGE_BYTES + 64, "{}", cut.len());
        assert!(
            cut.ends_with("... [truncated: 8388608 bytes in all]"),
            "{cut}"
        );
    }

    #[test]
    fn the_note_of_what_was_dropped_survives_any_cut() {
        let kept = "y".repeat(4096);
        let cut = bounded_of(&kept, 2048, 104_857_600);
        assert!(
            cut.ends_with("y... [truncated: 104857600 bytes in all, 2048 kept]"),
            "{cut}"
        );
        assert_eq!(
            bounded_of("abc", 2048, 10),
            "abc... [truncated: 10 bytes in all, 3 kept]"
        );
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        // 'é' is two bytes: a cut at 3 would fall inside the second one.
        assert_eq!(bounded("éé", 3), "é... [truncated: 4 bytes in all]");
        for max in 0..12 {
            let cut = bounded("日本語のテキスト", max);
            assert!(cut.len() <= max + 40, "{max}: {cut}");
        }
    }

    #[test]
    fn words_that_would_act_are_shown_instead() {
        let forged = "\u{1b}[2J\u{1b}[H\u{1b}]0;pwned\u{7}\rSum of all outputs: 31337 FORGED\n\
                      2026-12-02T00:00:00Z ERROR batch_worker: FORGED LINE";
        let shown = neutralised(forged);
        assert_eq!(
            shown,
            "\\u{1b}[2J\\u{1b}[H\\u{1b}]0;pwned\\u{7}\\rSum of all outputs: 31337 FORGED\\n\
             2026-12-02T00:00:00Z ERROR batch_worker: FORGED LINE"
        );
        assert!(!shown.chars().any(acts));
        // C1 controls (CSI as one character), DEL, bidi overrides, zero-width characters.
        assert_eq!(
            neutralised("a\u{9b}2Jb\u{7f}c\u{202e}d\u{200b}e"),
            "a\\u{9b}2Jb\\u{7f}c\\u{202e}d\\u{200b}e"
        );
        // A second pass changes nothing: every channel may neutralise again.
        assert_eq!(neutralised(&shown), shown);
        assert!(matches!(neutralised("plain text, é"), Cow::Borrowed(_)));
    }

    #[test]
    fn every_character_that_acts_is_escaped_and_nothing_else() {
        for code in 0..=0x30000u32 {
            let Some(c) = char::from_u32(code) else {
                continue;
            };
            let text = c.to_string();
            let shown = neutralised(&text);
            assert!(!shown.chars().any(acts), "{code:x}");
            assert_eq!(shown == text, !acts(c), "{code:x}");
        }
    }

    #[test]
    fn shown_is_bounded_then_neutralised() {
        let text = format!("{}\u{1b}", "z".repeat(10));
        assert_eq!(shown(&text, 4), "zzzz... [truncated: 11 bytes in all]");
        assert_eq!(shown("\u{1b}x", 64), "\\u{1b}x");
    }
}
